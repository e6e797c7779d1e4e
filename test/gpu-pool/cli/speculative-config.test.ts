import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { defaultFusionWeights } from '../../../shared/drafting/fusion';
import { parseFusionWeights, parseSpeculativeConfig, resolveSpeculation, type SpeculationFlags } from '../../../gpu-pool/cli/speculative-config';

const defaults: SpeculationFlags = { budget: 'marginal', maxTreeNodes: 32, governor: true, given: () => false };

describe('--speculative-config', () => {
  it('takes vLLM-style settings and the pool’s own, from JSON or @FILE', () => {
    const text = JSON.stringify({
      num_speculative_tokens: 24,
      budget: 'static',
      disable_by_batch_size: 64,
      max_tree_nodes_by_batch_size: { '1': 24, '8': 8 },
      fusion: { datastoreWidth: 12, combine: 'max' },
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'spec-config-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, 'spec.json'), text);
    for (const raw of [text, `@${path.join(dir, 'spec.json')}`]) {
      const s = resolveSpeculation(parseSpeculativeConfig(raw), defaults);
      expect(s).toMatchObject({ budget: 'static', maxTreeNodes: 24, disableByBatchSize: 64, maxTreeNodesByBatchSize: { '1': 24, '8': 8 } });
      // The governor judges the marginal budget's trees only.
      expect(s.governor).toBe(false);
      expect(s.fusion).toEqual({ ...defaultFusionWeights, datastoreWidth: 12, combine: 'max' });
    }
    // Nothing given: the flags as they are, the default weights.
    expect(resolveSpeculation(null, defaults)).toEqual({
      budget: 'marginal',
      governor: true,
      maxTreeNodes: 32,
      maxTreeNodesByBatchSize: {},
      disableByBatchSize: null,
      fusion: defaultFusionWeights,
    });
    expect(resolveSpeculation(parseSpeculativeConfig('{"governor": false}'), defaults).governor).toBe(false);
  });

  it('names what is wrong: unknown keys (with where a vLLM setting lives here), bad values, unreadable input', () => {
    expect(() => parseSpeculativeConfig('{"method": "ngram"}')).toThrow(/unrecognized key.*"method".*chosen per request/i);
    expect(() => parseSpeculativeConfig('{"prompt_lookup_max": 4}')).toThrow(/fusion\.contextMaxQuery/);
    expect(() => parseSpeculativeConfig('{"num_speculative_tokens": 0}')).toThrow(/num_speculative_tokens/);
    expect(() => parseSpeculativeConfig('{"num_speculative_tokens": 1000}')).toThrow(/num_speculative_tokens/);
    expect(() => parseSpeculativeConfig('{"budget": "huge"}')).toThrow(/budget/);
    expect(() => parseSpeculativeConfig('{"max_tree_nodes_by_batch_size": {"0": 4}}')).toThrow(/max_tree_nodes_by_batch_size\.0: "0" is not a batch size/);
    expect(() => parseSpeculativeConfig('{"max_tree_nodes_by_batch_size": {"8": 2.5}}')).toThrow(/max_tree_nodes_by_batch_size\.8/);
    expect(() => parseSpeculativeConfig('{"fusion": {"edgeWeight": 1}}')).toThrow(/fusion.*edgeWeight/);
    expect(() => parseSpeculativeConfig('{"fusion": {"datastoreWidth": 0}}')).toThrow(/fusion\.datastoreWidth/);
    expect(() => parseSpeculativeConfig('[1]')).toThrow(/--speculative-config/);
    expect(() => parseSpeculativeConfig('{oops')).toThrow(/not JSON/);
    expect(() => parseSpeculativeConfig('@/nonexistent/spec.json')).toThrow(/--speculative-config file not found: \/nonexistent\/spec\.json/);
    // A folder named: said so (it was "cannot read" and no reason).
    expect(() => parseSpeculativeConfig(`@${tmpdir()}`)).toThrow(/--speculative-config file .* is a folder; name a file/);
  });

  it('refuses a setting given both as a flag and in the config, and table caps above the most nodes', () => {
    const given = (flag: string) => flag === 'maxTreeNodes';
    expect(() => resolveSpeculation(parseSpeculativeConfig('{"num_speculative_tokens": 8}'), { ...defaults, given })).toThrow(/--max-tree-nodes and --speculative-config's num_speculative_tokens/);
    // The flag alone, or the config alone, is fine.
    expect(resolveSpeculation(parseSpeculativeConfig('{"budget": "static"}'), { ...defaults, maxTreeNodes: 8, given }).maxTreeNodes).toBe(8);
    expect(() => resolveSpeculation(parseSpeculativeConfig('{"max_tree_nodes_by_batch_size": {"4": 40}}'), defaults)).toThrow(/max_tree_nodes_by_batch_size\.4 is 40, more than num_speculative_tokens \(32\)/);
    expect(() => resolveSpeculation(null, { ...defaults, budget: 'huge' })).toThrow(/--budget must be one of/);
    expect(() => resolveSpeculation(null, { ...defaults, maxTreeNodes: 100_000 })).toThrow(/--max-tree-nodes must be at most 256, not 100000/);
  });

  it('gives eval-drafts the same fusion weight checks', () => {
    expect(parseFusionWeights('{"edge": 0.7}', '--weights')).toEqual({ ...defaultFusionWeights, edge: 0.7 });
    expect(() => parseFusionWeights('{"edge": "high"}', '--weights')).toThrow(/--weights: edge/);
    expect(() => parseFusionWeights('nope', '--weights')).toThrow(/--weights must be a JSON object/);
  });
});
