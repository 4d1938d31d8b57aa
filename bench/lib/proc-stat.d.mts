export function procSample(pid: number): Promise<{ cpuSeconds: number; rssMB: number; anonMB: number } | undefined>;
export function cpuFromStat(stat: string): number;
export function memorySync(pid?: number | 'self'): { rssMB: number; anonMB: number };
export function rssFromStatus(status: string, field?: string): number;
export function sampleProcess(pid: number, everyMs?: number): { stop(): Promise<{ maxRssMB: number; maxAnonMB: number; lastRssMB: number; cpuSeconds: number }> };
