// Text to stdout for commands that stream (generate, chat): when the reader goes away (`| head`) writing
// stops and the run is aborted, instead of crashing on EPIPE.

export function stdoutWriter(abort: AbortController): (text: string) => void {
  let open = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    open = false;
    abort.abort();
  });
  return (text) => {
    if (open && text) process.stdout.write(text);
  };
}
