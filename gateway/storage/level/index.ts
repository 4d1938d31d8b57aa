export { LevelStorage, type LevelStorageOptions } from './level-storage.js';
