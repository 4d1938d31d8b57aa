import { describe, expect, it } from 'vitest';
import { sumSeries } from '../integration/agent-harness.js';

const TEXT = [
  '# HELP meteorzx_agent_files_open Files the file intake holds open now',
  '# TYPE meteorzx_agent_files_open gauge',
  'meteorzx_agent_files_open 0',
  'meteorzx_agent_files_open_limit 64',
  'meteorzx_agent_events_in_total{intake="http"} 5',
  'meteorzx_agent_events_in_total{intake="files"} 7',
  'meteorzx_agent_events_in_total_extra 100',
].join('\n');

describe('the integration harness reading /metrics', () => {
  it('sums the series of the metric named, not of every metric whose name starts with it', () => {
    // Before: a prefix match, so the open-files gauge read 64 (its _limit's value) with no file open.
    expect(sumSeries(TEXT, 'meteorzx_agent_files_open')).toBe(0);
    expect(sumSeries(TEXT, 'meteorzx_agent_files_open_limit')).toBe(64);
    expect(sumSeries(TEXT, 'meteorzx_agent_events_in_total')).toBe(12);
    expect(sumSeries(TEXT, 'meteorzx_agent_events_in_total{intake="files"}')).toBe(7);
    expect(sumSeries(TEXT, 'meteorzx_agent_events_in_total{intake="serial"}')).toBe(0);
  });
});
