/**
 * `sssd pool --speculative-config`: the pool's speculation settings as one
 * JSON object, the shape vLLM users know from its `--speculative-config`
 * (snake_case, `num_speculative_tokens`, a disable-by-batch-size knob) plus
 * what is this pool's own: the budget policy, the governor, a per-batch-size
 * table of tree sizes, and the drafter's fusion weights (the names of
 * `FusionWeights`, as `sssd eval-drafts --weights` takes them, so weights
 * chosen offline are pasted as they are).
 *
 * The method is not here: every request names its own (`speculation` in the
 * protocol), so `off`, `pld` and `sssd` share one pool.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { type FusionWeights, defaultFusionWeights } from '../../shared/drafting/fusion';
import { budgetPolicies } from '../budget/tree-budget';
import { CliError, unreadableFile } from './cli-error';

/** The largest tree a config may ask for: the verifier and per-row buffers are sized from it. */
export const MAX_TREE_NODES_LIMIT = 256;

const count = (min: number, max: number) => z.number().int().min(min).max(max);
const weight = z.number().finite().min(0);

export const fusionWeightsSchema = z.strictObject({
  contextFirst: weight.max(1),
  contextBase: weight.max(1),
  contextPerMatch: weight.max(1),
  contextWindow: count(1, 64),
  contextMaxQuery: count(1, 64),
  datastore: weight,
  datastoreMatchPower: weight.max(8),
  datastoreWidth: count(1, 64),
  datastoreMaxQuery: count(1, 64),
  edge: weight,
  maxChildren: count(1, 64),
  combine: z.enum(['noisy-or', 'max']),
  minCandidateProb: weight.max(1),
  sourceFanout: z.number().finite().positive().max(16),
});

const speculativeConfigSchema = z.strictObject({
  /** Most draft nodes per request per step (`--max-tree-nodes`). */
  num_speculative_tokens: count(1, MAX_TREE_NODES_LIMIT).optional(),
  /** `--budget`. */
  budget: z.enum([...budgetPolicies, 'off']).optional(),
  /** false = `--no-governor`. */
  governor: z.boolean().optional(),
  /** No drafting at all while this many generations or more are running (vLLM's speculative_disable_by_batch_size). */
  disable_by_batch_size: count(1, 1 << 20).optional(),
  /**
   * Most draft nodes per request by running batch size: {"1": 32, "8": 16,
   * "32": 4} caps batches of 1-7 rows at 32, 8-31 at 16, 32 and up at 4;
   * below the smallest key, num_speculative_tokens. 0 turns drafting off
   * from that size.
   */
  max_tree_nodes_by_batch_size: z
    .record(z.string(), count(0, MAX_TREE_NODES_LIMIT))
    .superRefine((table, ctx) => {
      for (const key of Object.keys(table)) {
        if (!/^[1-9][0-9]{0,6}$/.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: `"${key}" is not a batch size (keys are 1, 2, ...)` });
      }
    })
    .optional(),
  /** Overrides of the drafter's fusion weights (shared/drafting/fusion.ts). */
  fusion: fusionWeightsSchema.partial().optional(),
});

export type SpeculativeConfig = z.infer<typeof speculativeConfigSchema>;

/** What vLLM users reach for first, and where it lives here. */
const HINTS: Record<string, string> = {
  method: 'the speculation method is chosen per request (`speculation`: off, pld, context or sssd)',
  model: 'there is no draft model: drafts come from n-grams (context, edge trie, datastore)',
  prompt_lookup_max: 'the context source matches suffixes of up to fusion.contextMaxQuery tokens',
  prompt_lookup_min: 'the context source matches suffixes of up to fusion.contextMaxQuery tokens',
};

/** Parses the flag's value: a JSON object, or `@FILE` holding one. */
export function parseSpeculativeConfig(raw: string): SpeculativeConfig {
  let text = raw;
  let where = '--speculative-config';
  if (raw.startsWith('@')) {
    const file = raw.slice(1);
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw unreadableFile('--speculative-config file', file, err);
    }
    where = `--speculative-config ${file}`;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${where}: not JSON (${(err as Error).message})`);
  }
  const parsed = speculativeConfigSchema.safeParse(json);
  if (!parsed.success) throw new CliError(`${where}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** Each issue as `path: message`, with where a vLLM setting lives here when an unknown key is one (HINTS). */
function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
      const hint = keys.map((k) => HINTS[k]).find((h) => h !== undefined);
      const at = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
      return `${at}${issue.message}${hint ? ` (${hint})` : ''}`;
    })
    .join('; ');
}

/** Fusion weights with a config's (or `--weights`') overrides applied. */
export function fusionWeightsWith(overrides: Partial<FusionWeights> | undefined): FusionWeights {
  return overrides ? { ...defaultFusionWeights, ...overrides } : defaultFusionWeights;
}

/** Parses fusion weight overrides given on their own (`sssd eval-drafts --weights`). */
export function parseFusionWeights(raw: string, flag: string): FusionWeights {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new CliError(`${flag} must be a JSON object`);
  }
  const parsed = fusionWeightsSchema.partial().safeParse(json);
  if (!parsed.success) throw new CliError(`${flag}: ${describeIssues(parsed.error.issues)}`);
  return fusionWeightsWith(parsed.data);
}

/** The pool's speculation settings once flags and config are merged. */
export interface SpeculationSettings {
  budget: (typeof budgetPolicies)[number] | 'off';
  /** Whether the governor runs (marginal budget only). */
  governor: boolean;
  maxTreeNodes: number;
  maxTreeNodesByBatchSize: Record<string, number>;
  disableByBatchSize: number | null;
  fusion: FusionWeights;
}

/** The flags a config may also set, as commander gives them, and whether each was given on the command line. */
export interface SpeculationFlags {
  budget: string;
  maxTreeNodes: number;
  governor: boolean;
  given: (flag: 'budget' | 'maxTreeNodes' | 'governor') => boolean;
}

const FLAG_OF = { budget: '--budget', maxTreeNodes: '--max-tree-nodes', governor: '--no-governor' } as const;

/** Merges a config with the flags; a setting given both ways is refused rather than silently overridden. */
export function resolveSpeculation(config: SpeculativeConfig | null, flags: SpeculationFlags): SpeculationSettings {
  const both = (flag: keyof typeof FLAG_OF, key: string, inConfig: boolean): void => {
    if (inConfig && flags.given(flag)) throw new CliError(`${FLAG_OF[flag]} and --speculative-config's ${key} both set it: give it once`);
  };
  both('budget', 'budget', config?.budget !== undefined);
  both('maxTreeNodes', 'num_speculative_tokens', config?.num_speculative_tokens !== undefined);
  both('governor', 'governor', config?.governor !== undefined);
  const budget = config?.budget ?? flags.budget;
  if (budget !== 'off' && !(budgetPolicies as readonly string[]).includes(budget)) {
    throw new CliError(`--budget must be one of ${budgetPolicies.join(', ')}, off; not "${budget}"`);
  }
  const maxTreeNodes = config?.num_speculative_tokens ?? flags.maxTreeNodes;
  if (maxTreeNodes > MAX_TREE_NODES_LIMIT) throw new CliError(`--max-tree-nodes must be at most ${MAX_TREE_NODES_LIMIT}, not ${maxTreeNodes}`);
  const table = config?.max_tree_nodes_by_batch_size ?? {};
  for (const [size, cap] of Object.entries(table)) {
    if (cap > maxTreeNodes) {
      throw new CliError(`--speculative-config: max_tree_nodes_by_batch_size.${size} is ${cap}, more than num_speculative_tokens (${maxTreeNodes})`);
    }
  }
  return {
    budget: budget as SpeculationSettings['budget'],
    governor: budget === 'marginal' && (config?.governor ?? flags.governor),
    maxTreeNodes,
    maxTreeNodesByBatchSize: table,
    disableByBatchSize: config?.disable_by_batch_size ?? null,
    fusion: fusionWeightsWith(config?.fusion),
  };
}
