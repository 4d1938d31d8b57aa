export { createPipeline, type Pipeline } from './pipeline.js';
export type { PipelineAlert, PipelineConfig, PipelineOptions } from './options.js';
export type { IngestContext, Ingestor } from './ingestor.js';
