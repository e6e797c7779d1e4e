/**
 * What the pool has learnt of how much each kind of draft is accepted, for
 * the budget to price the next ones by: per acceptance key (a method, with
 * sampled rows apart as `<method>:sampled`), the drafters' estimates
 * corrected by what verification accepted, and the accepted tokens a drafted
 * row-step brings; per chain key, the table chains' estimates corrected by
 * depth (DepthCalibration).
 */
import { DepthCalibration } from './depth-calibration';
import { MAX_CHAIN } from '../../shared/drafting/table-chain';

/** Weight kept per drafted row-step in the estimate correction: the last few hundred rows count. */
const SCALE_DECAY = 0.995;
/** Weights of the old mean and the new row-step in a kind's mean accepted tokens. */
const MEAN_KEPT = 0.99;
const MEAN_NEW = 0.01;
/** Weights of the old record and the new step in a row's own accepted tokens: the last few steps count. */
const ROW_KEPT = 0.7;
const ROW_NEW = 0.3;

export class AcceptanceRecord {
  private readonly scales = new Map<string, { predicted: number; observed: number }>();
  private readonly means = new Map<string, number>();
  private readonly chains = new Map<string, DepthCalibration>();

  /**
   * How much of what the drafters of `key` predict is accepted (corrects
   * their estimates). Sampled rows are calibrated apart (`<method>:sampled`):
   * they accept far less than greedy ones, and one shared scale starved the
   * greedy rows' trees while over-feeding the sampled ones.
   */
  probScale(key: string): number {
    const a = this.scales.get(key);
    return a ? Math.min(2, Math.max(0.05, a.observed / a.predicted)) : 1;
  }

  /**
   * What a row is expected to accept if drafted now: its own record
   * (`rowAccepted`, < 0 before its first draft), else its kind's, else
   * optimism.
   */
  expected(key: string, rowAccepted: number): number {
    if (rowAccepted >= 0) return rowAccepted;
    return this.means.get(key) ?? 1;
  }

  /**
   * A verified tree of a row of kind `key`: its nodes' estimates summed to
   * `predicted`, `accepted` of them accepted. Returns the row's own record to
   * keep (expected), decayed over a few steps and starting from its kind's
   * mean: one unlucky first draft must not stop a row drafting.
   */
  recordTree(key: string, rowAccepted: number, predicted: number, accepted: number): number {
    let a = this.scales.get(key);
    if (!a) {
      a = { predicted: 1, observed: 1 };
      this.scales.set(key, a);
    }
    a.predicted = a.predicted * SCALE_DECAY + predicted;
    a.observed = a.observed * SCALE_DECAY + accepted;
    const row = this.expected(key, rowAccepted) * ROW_KEPT + accepted * ROW_NEW;
    const mean = this.means.get(key);
    this.means.set(key, mean === undefined ? accepted : mean * MEAN_KEPT + accepted * MEAN_NEW);
    return row;
  }

  /** Per chain acceptance key (greedy and sampled rows apart): the chains' estimates corrected by depth. */
  chainCalibration(key: string): DepthCalibration {
    let c = this.chains.get(key);
    if (!c) {
      c = new DepthCalibration(MAX_CHAIN);
      this.chains.set(key, c);
    }
    return c;
  }
}
