/**
 * Structured outputs' masks: the output's text must stay inside a language
 * (shared/structured/text-automaton.ts: vLLM's choice, regex, JSON schema or
 * JSON object), and may end only where it is a whole sentence of it. vLLM
 * masks every token its grammar cannot take next, the end token too until
 * the grammar is done; so here, at every node of a draft tree: the node's
 * text (the output, then the draft tokens on its path) is a state, a token
 * moves it by the bytes it prints as the edge prints them (token-texts.ts),
 * and the ids allowed at a state are computed once and kept. A token is
 * allowed only where tokens can go on from it to a whole sentence: the
 * automaton is cut to the characters the tokenizer prints, and where one is
 * printed only inside longer tokens, a search finds tokens that finish the
 * state (TextLanguage.finishable).
 */
import { DEAD, UNBUILT, type TextAutomaton } from '../../shared/structured/text-automaton';
import { AutomatonLimitError } from '../../shared/structured/automaton-limit-error';
import { ChoiceTrie } from '../../shared/structured/choice-trie';
import type { TokenTexts } from './token-texts';

export { DEAD };

/** A TextMasks state: nothing written yet (the language's start, where the first token prints as it does after the token before it). */
export const START = -2;
/** afterBuilt's answer where the language has not built the state yet. */
export const NOT_BUILT = -3;

/**
 * What one request may add to its language's automaton: building work (NFA
 * states visited) and states. Charged to the request
 * whose masks did the building, so a request is held to its own, whoever
 * shares the language. Cutting its drafts (structured-drafts.ts) builds
 * states apart, within a budget of its own (past it, drafts are cut over
 * the states already built alone): not charged, so neither speculation nor
 * another request sharing the pattern ends a request sooner than it would
 * end alone and without (states built before cost it nothing: it may go
 * further).
 */
export interface RequestMaskBounds {
  /** NFA states visited building DFA states. */
  work: number;
  /** DFA states built. */
  states: number;
}

/** A pool's bounds, unless its Scheduler is given others (SchedulerOptions.maskBounds): the work is ~0.12 s of CPU here. */
export const REQUEST_MASK_BOUNDS: Readonly<RequestMaskBounds> = { work: 10_000_000, states: 20_000 };
const DRAFT_MAX_WORK = 10_000_000;

/** Most ids a language keeps, over all its states' lists (4 MB; a pool keeps 16 regex languages and each request's choices); past it the cache starts over (a long output in a wide language visits many). */
const MAX_CACHED_IDS = 1 << 20;

/**
 * Tokens one search for a way to finish a state may follow, and states it
 * may visit (finishable: ~1-20 ms here at 32K ids; the states it builds are
 * the request's, as its masks' are); past either, the state is taken as
 * finishable, as every state was before the search.
 */
const FINISH_SEARCH_FOLLOWS = 50_000;
const FINISH_SEARCH_STATES = 1_000;
/** finishable's answers by state: not searched yet, a token sequence finishes it, none does, taken as finishing (the search ran past its bound). */
const UNKNOWN = 0;
const FINISHES = 1;
const STUCK = 2;
const ASSUMED = 3;

/** A state's ids: the allowed ones ascending, and where they are most of the vocabulary, the rest (masking those is the cheaper write). */
interface StateIds {
  allowed: Int32Array;
  banned: Int32Array | null;
}

/**
 * A language over one tokenizer's texts, with the ids allowed at each state
 * it has visited: shared by every generation that asks for the same one (a
 * JSON schema sent with every request computes its states' ids once).
 */
export class TextLanguage {
  private readonly byState = new Map<number, StateIds>();
  /** The ids of every state past `(?any-tail)`: all of them, nothing banned. */
  private everyId: StateIds | undefined;
  private cachedIds = 0;
  private readonly endIds: Int32Array;
  /**
   * finishable's answers by state (not after BOS: only the output's first
   * token prints after it), or null where no search is needed: the
   * automaton is cut to the characters the tokenizer prints
   * (TokenTexts.printable), and where each is printed alone any text of them
   * is tokens' texts end to end, so every state it keeps can be finished.
   */
  private finishes: Uint8Array | null;
  /** Tokens the searches for one state's candidates may still follow (idsAt sets it, finishable spends it). */
  private searchFollowsLeft = FINISH_SEARCH_FOLLOWS;

  /** `endIds`: the ids that end a generation, allowed where the text is a whole sentence. */
  constructor(
    readonly automaton: TextAutomaton,
    readonly texts: TokenTexts,
    endIds: readonly number[],
  ) {
    this.endIds = Int32Array.from(endIds);
    this.finishes = texts.printsEachAlone ? null : new Uint8Array(64);
  }

  /** Whether `id` is one of the ids that end a generation. */
  endsWith(id: number): boolean {
    return this.endIds.includes(id);
  }

  /** As `next`, over the states already built alone: UNBUILT where the state after `token` is not (nothing is built). */
  nextBuilt(state: number, token: number, afterBos: boolean): number {
    const { texts, automaton } = this;
    if (automaton.followBuilt === undefined) return this.next(state, token, afterBos);
    if (state === DEAD || token < 0 || token >= texts.vocabSize) return DEAD;
    if (automaton.anyTail?.(state) === true) return state;
    const start = texts.start(token, afterBos);
    const end = texts.end(token, afterBos);
    if (start === end) return DEAD;
    return automaton.followBuilt(state, texts.table(afterBos), start, end);
  }

  /** The automaton's state after `token` from `state` (`afterBos`: the token printed right after BOS). */
  next(state: number, token: number, afterBos: boolean): number {
    const { texts } = this;
    if (state === DEAD || token < 0 || token >= texts.vocabSize) return DEAD;
    // Past `(?any-tail)` every token stays (the mask is lifted), whatever it prints: the state is kept.
    if (this.automaton.anyTail?.(state) === true) return state;
    const start = texts.start(token, afterBos);
    const end = texts.end(token, afterBos);
    // A token that prints nothing moves no text: not one the masks allow, so none a path holds.
    if (start === end) return DEAD;
    return this.automaton.follow(state, texts.table(afterBos), start, end);
  }

  /**
   * The ids allowed at the automaton's `state` (owned by this object, not to
   * be modified). DEAD, where no accepted path leads (its token was masked at
   * the node above): the end ids, so it masks like a finished sentence.
   */
  idsAt(state: number, afterBos: boolean): StateIds {
    const key = state * 2 + (afterBos ? 1 : 0);
    const cached = this.byState.get(key);
    if (cached) return cached;
    const { texts, automaton } = this;
    // Past (?any-tail): every id, one entry for all such states, kept apart from the cache's bound (a vocabulary's worth).
    if (automaton.anyTail?.(state) === true) return (this.everyId ??= { allowed: Int32Array.from({ length: texts.vocabSize }, (_, id) => id), banned: new Int32Array(0) });
    const allowed = new Uint8Array(texts.vocabSize);
    let count = 0;
    if (state !== DEAD) {
      // One budget for all of this state's candidates' searches: each past its own bound walked its states again
      // (review h162: 300 candidates, 250 ms in the step loop).
      this.searchFollowsLeft = FINISH_SEARCH_FOLLOWS;
      const table = texts.table(afterBos);
      // Only ids starting with a byte that goes on from the state can stay inside: the rest are never looked at.
      for (const byte of automaton.nextBytes(state)) {
        const { ids, from, to } = texts.startingWith(byte, afterBos);
        for (let i = from; i < to; i++) {
          const id = ids[i];
          const next = automaton.follow(state, table, texts.start(id, afterBos), texts.end(id, afterBos));
          // A token is allowed only where tokens can go on from it to a whole sentence.
          if (next !== DEAD && (this.finishes === null || this.finishable(next))) {
            allowed[id] = 1;
            count++;
          }
        }
      }
    }
    if (state === DEAD || automaton.accepting(state)) {
      for (const id of this.endIds) if (!allowed[id]) {
        allowed[id] = 1;
        count++;
      }
    }
    const ids = new Int32Array(count);
    for (let id = 0, k = 0; id < allowed.length; id++) if (allowed[id]) ids[k++] = id;
    let banned: Int32Array | null = null;
    if (count > allowed.length / 2) {
      banned = new Int32Array(allowed.length - count);
      for (let id = 0, k = 0; id < allowed.length; id++) if (!allowed[id]) banned[k++] = id;
    }
    const entry = { allowed: ids, banned };
    if (this.cachedIds + ids.length + (banned?.length ?? 0) > MAX_CACHED_IDS) {
      this.byState.clear();
      this.cachedIds = 0;
    }
    this.byState.set(key, entry);
    this.cachedIds += ids.length + (banned?.length ?? 0);
    return entry;
  }

  /**
   * Whether some tokens, printed from `state` (not after BOS), reach a whole
   * sentence: exact where the search ends within FINISH_SEARCH_FOLLOWS, and
   * taken as yes past it (a character printed only inside longer tokens may
   * then still leave a text no token finishes). Depth first; a state whose
   * search found a way finishes, as does each on the path to it; a search
   * that ran out of states to visit without one proves every state it
   * visited stuck (each one's every token was followed). Answers kept.
   */
  private finishable(root: number): boolean {
    const known = this.memo(root);
    if (known !== UNKNOWN) return known !== STUCK;
    const { automaton, texts } = this;
    const table = texts.table(false);
    // The search's path: each state, the index of the next byte of its nextBytes to try, and the next id of that byte's.
    const path: number[] = [];
    const byteAt: number[] = [];
    const idAt: number[] = [];
    const visited = new Set<number>();
    let follows = 0;
    // What is left of this state's budget (idsAt): past it, no search at all, the state taken as finishing (not kept).
    if (this.searchFollowsLeft <= 0) return true;
    /** Where the search starts or steps: whether `state` ends it (a sentence, or known to finish). */
    const enter = (state: number): number => {
      const memo = this.memo(state);
      if (memo === FINISHES || memo === ASSUMED) return memo;
      if (automaton.accepting(state) || automaton.anyTail?.(state) === true) return FINISHES;
      if (memo === UNKNOWN && !visited.has(state)) {
        visited.add(state);
        path.push(state);
        byteAt.push(0);
        idAt.push(-1);
      }
      return UNKNOWN;
    };
    let found = enter(root);
    while (found === UNKNOWN && path.length > 0) {
      if (follows >= this.searchFollowsLeft || visited.size > FINISH_SEARCH_STATES) {
        this.searchFollowsLeft -= follows;
        // Past the bound only the state asked about is answered (taken to finish), so a later search may still decide the others.
        this.remember(root, ASSUMED);
        return true;
      }
      const top = path.length - 1;
      const state = path[top];
      const bytes = automaton.nextBytes(state);
      if (byteAt[top] >= bytes.length) {
        path.pop();
        byteAt.pop();
        idAt.pop();
        continue;
      }
      const { ids, from, to } = texts.startingWith(bytes[byteAt[top]], false);
      const i = idAt[top] < 0 ? from : idAt[top];
      if (i >= to) {
        byteAt[top]++;
        idAt[top] = -1;
        continue;
      }
      idAt[top] = i + 1;
      follows++;
      const next = automaton.follow(state, table, texts.start(ids[i], false), texts.end(ids[i], false));
      if (next !== DEAD) found = enter(next);
    }
    this.searchFollowsLeft -= follows;
    if (found === UNKNOWN) {
      // Every state visited had all its tokens followed, to DEAD, stuck states or states visited: none finishes.
      for (const state of visited) this.remember(state, STUCK);
      return false;
    }
    // The path to what finishes (or is taken to) finishes likewise; the root is on it, unless it ended the search itself.
    for (const state of path) this.remember(state, found);
    this.remember(root, found);
    return true;
  }

  private memo(state: number): number {
    const finishes = this.finishes!;
    return state < finishes.length ? finishes[state] : UNKNOWN;
  }

  private remember(state: number, answer: number): void {
    let finishes = this.finishes!;
    if (state >= finishes.length) {
      const grown = new Uint8Array(Math.max(state + 1, finishes.length * 2));
      grown.set(finishes);
      this.finishes = finishes = grown;
    }
    finishes[state] = answer;
  }
}

/**
 * One generation's masks: the state of its output (observe), a node's state
 * (the output's, then the draft tokens on its path), and the ids allowed
 * there, from its language.
 */
export class TextMasks {
  /** State of the output so far. */
  private outputState = START;
  /** Building cutting this request's drafts added (afterForDraft), apart from its own. */
  private draftWork = 0;
  /** Building this request's calls added to the automaton (work, states), and the automaton's counts when the current call began. */
  private work = 0;
  private states = 0;
  private workBefore = 0;
  private statesBefore = 0;

  /**
   * `firstAfterBos`: the token before the output (the prompt's last, before
   * any resumed output) is BOS, so the output's first token prints without
   * its leading space.
   */
  constructor(
    private readonly language: TextLanguage,
    private readonly firstAfterBos: boolean,
    /** What this request may build (tests set small ones). */
    private readonly bounds: Readonly<RequestMaskBounds> = REQUEST_MASK_BOUNDS,
  ) {}

  /**
   * Masks for vLLM's choices: a language of their own (a trie of those the
   * tokenizer prints), `endIds` ending a generation. None printable: an
   * UnprintableTextError.
   */
  static ofChoices(choices: readonly string[], texts: TokenTexts, endIds: readonly number[], firstAfterBos: boolean): TextMasks {
    return new TextMasks(new TextLanguage(new ChoiceTrie(choices, texts.printable), texts, endIds), firstAfterBos);
  }

  /** One emitted token joins the output. */
  observe(token: number): void {
    this.begin();
    try {
      this.outputState = this.next(this.outputState, token);
    } finally {
      this.end();
    }
    this.check();
  }

  /** The state at a node whose path from the root carries `rowTokens[path[0..depth)]`. */
  stateAt(rowTokens: ArrayLike<number>, path: ArrayLike<number>, depth: number): number {
    this.begin();
    let state = this.outputState;
    try {
      for (let i = 0; i < depth && state !== DEAD; i++) state = this.next(state, rowTokens[path[i]]);
    } finally {
      this.end();
    }
    this.check();
    return state;
  }

  /** The state after `ids` from the output's (nothing is observed). */
  stateAfter(ids: ArrayLike<number>): number {
    this.begin();
    let state = this.outputState;
    try {
      for (let i = 0; i < ids.length && state !== DEAD; i++) state = this.next(state, ids[i]);
    } finally {
      this.end();
    }
    this.check();
    return state;
  }

  /** The state after `token` from `state` where the language has built it; NOT_BUILT where it has not (nothing is built, nothing charged). */
  afterBuilt(state: number, token: number): number {
    if (state === NOT_BUILT) return NOT_BUILT;
    const next = state === START ? this.language.nextBuilt(0, token, this.firstAfterBos) : this.language.nextBuilt(state, token, false);
    return next === UNBUILT ? NOT_BUILT : next;
  }

  /**
   * The state after a draft token: built where the drafts' own budget
   * allows (not charged to the request: see REQUEST_MASK_BOUNDS), over the
   * states already built alone past it. A token whose building runs past
   * that budget is an AutomatonLimitError, stopped as it builds: that
   * step's row goes undrafted (row-drafting.ts), and its later steps cut
   * their drafts over the states built.
   */
  afterForDraft(state: number, token: number): number {
    if (state === NOT_BUILT) return NOT_BUILT;
    const { automaton } = this.language;
    if (automaton.workDone === undefined) return this.next(state, token);
    if (this.draftWork >= DRAFT_MAX_WORK) return this.afterBuilt(state, token);
    const before = automaton.workDone;
    automaton.setWorkBudget?.(DRAFT_MAX_WORK - this.draftWork, DRAFT_MAX_WORK);
    try {
      return this.next(state, token);
    } finally {
      automaton.clearWorkBudget?.();
      this.draftWork += automaton.workDone - before;
    }
  }

  /** A call begins: what it builds is bounded by what is left of the request's own bound, as it builds. */
  private begin(): void {
    const { automaton } = this.language;
    this.workBefore = automaton.workDone ?? 0;
    this.statesBefore = automaton.stateCount ?? 0;
    automaton.setWorkBudget?.(this.bounds.work - this.work, this.bounds.work);
  }

  /** A call ended (or threw): what it built is this request's. */
  private end(): void {
    const { automaton } = this.language;
    automaton.clearWorkBudget?.();
    if (automaton.workDone === undefined) return;
    this.work += automaton.workDone - this.workBefore;
    this.states += (automaton.stateCount ?? 0) - this.statesBefore;
  }

  /** Past its bounds, the request ends (AutomatonLimitError). */
  private check(): void {
    if (this.work <= this.bounds.work && this.states <= this.bounds.states) return;
    const what = this.language.automaton.what ?? 'structured output';
    if (this.work > this.bounds.work) throw new AutomatonLimitError(this.bounds.work, what, 'steps of building');
    throw new AutomatonLimitError(this.bounds.states, what);
  }

  /** The state of the output so far. */
  get state(): number {
    return this.outputState;
  }

  private next(state: number, token: number): number {
    return state === START ? this.language.next(0, token, this.firstAfterBos) : this.language.next(state, token, false);
  }

  /** The state's ids, what building them took charged to this request. */
  private idsAt(state: number): StateIds {
    this.begin();
    let ids: StateIds;
    try {
      ids = state === START ? this.language.idsAt(0, this.firstAfterBos) : this.language.idsAt(state, false);
    } finally {
      this.end();
    }
    this.check();
    return ids;
  }

  /** The ids allowed at `state`, ascending (owned by the language, not to be modified). */
  allowedAt(state: number): Int32Array {
    return this.idsAt(state).allowed;
  }

  /** Whether the language lets nothing but an end id follow at `state` (the text is whole, and no more of it may come). */
  endsOnlyAt(state: number): boolean {
    const allowed = this.allowedAt(state);
    if (allowed.length === 0) return false;
    for (let i = 0; i < allowed.length; i++) if (!this.language.endsWith(allowed[i])) return false;
    return true;
  }

  /**
   * Masks in `out` every id not allowed at `state`: `kept` (vocabulary-sized
   * scratch) holds the allowed ids' values meanwhile. No allocation once the
   * state's ids are known.
   */
  mask(out: Float32Array, state: number, kept: Float32Array): void {
    const { allowed, banned } = this.idsAt(state);
    if (banned !== null) {
      for (let i = 0; i < banned.length; i++) out[banned[i]] = -Infinity;
      return;
    }
    for (let i = 0; i < allowed.length; i++) kept[i] = out[allowed[i]];
    out.fill(-Infinity);
    for (let i = 0; i < allowed.length; i++) out[allowed[i]] = kept[i];
  }
}
