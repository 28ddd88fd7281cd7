/**
 * Runs `run` with a deadline: after `ms` its signal aborts and the returned promise rejects with
 * `onTimeout()` (whatever `run` does later is ignored). The one timeout helper of the project (payments,
 * rate-limit stores).
 */
export async function withTimeout<T>(ms: number, run: (signal: AbortSignal) => Promise<T>, onTimeout: () => Error): Promise<T> {
  const ctrl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ctrl.abort();
      reject(onTimeout());
    }, ms);
  });
  try {
    return await Promise.race([run(ctrl.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
