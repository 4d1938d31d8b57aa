export type { AgentBuffer, BufferState, WhenFull } from './types.js';
export { LevelBuffer, openBuffer } from './level-buffer.js';
export { DEFAULT_BUFFER_OPTIONS, resolveBufferOptions, type BufferOptions, type BufferLogger, type Clock, type Durability } from './options.js';
