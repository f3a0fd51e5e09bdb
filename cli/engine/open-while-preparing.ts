// Opens a model while this thread prepares what the run needs from the tokenizer. Building a tokenizer takes about
// as long as loading a 7B's weights onto a GPU (Llama 2's 0.3 s, Llama 3's 1.4 s on the development VM), and the
// weights load on the addon's threads, so a command that overlaps the two starts in the longer of them instead of
// their sum.

/** What a model handle must offer here: a way to let go of it when the preparation failed. */
export interface Closable {
  close(): void;
}

const PENDING = Symbol('pending');

/**
 * Starts `open`, then runs `prepare` (tokenizer work, checks of the prompt) while the weights load; `opened` is the
 * model, for the caller to await (behind a spinner, say) once the preparation is done.
 * - `open` failing before its load starts (no GPU, a split that does not fit) is reported before `prepare` runs.
 * - `prepare` failing is reported at once; the model, whose load can't be stopped, is closed once it lands.
 * - `open` failing later is reported where `opened` is awaited.
 */
export async function prepareWhileOpening<M extends Closable, T>(open: () => Promise<M>,
    prepare: () => Promise<T> | T): Promise<{ prepared: T; opened: Promise<M> }> {
  const opened = open();
  // An async function that throws before its first await returns a promise that is already rejected: the race
  // settles with that rejection before the sentinel (and marks `opened` as handled while prepare runs).
  await Promise.race([opened, Promise.resolve(PENDING)]);
  try {
    return { prepared: await prepare(), opened };
  } catch (err) {
    void opened.then((model) => model.close(), () => undefined);
    throw err;
  }
}
