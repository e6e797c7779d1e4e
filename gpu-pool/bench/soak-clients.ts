/** A soak's clients: each picks its next action by weight, until the time is up. */

export interface WeightedAction {
  weight: number;
  run: () => Promise<void>;
}

/** `stop`: no client starts another action once it is aborted (Ctrl-C); those running finish. */
export async function runSoakClients(actions: readonly WeightedAction[], random: () => number, seconds: number, concurrency: number, stop?: AbortSignal): Promise<void> {
  const total = actions.reduce((sum, a) => sum + a.weight, 0);
  const next = (): WeightedAction => {
    let r = random() * total;
    for (const action of actions) {
      r -= action.weight;
      if (r < 0) return action;
    }
    return actions[0];
  };
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end && !stop?.aborted) await next().run();
    }),
  );
}
