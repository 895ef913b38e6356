// Output to a pipe whose reader has gone (`tubectl bindings | head -1`)
// ends tubectl quietly: what the reader wanted has been written, so the
// exit status is whatever the command had come to (0 unless it failed), and
// no stack trace appears. Node ignores SIGPIPE and reports EPIPE as an
// 'error' event on the stream instead, which would otherwise be unhandled.

/** Ends the process quietly when `stream` is a closed pipe; other errors stay fatal. */
export function endQuietlyOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    const code = process.exitCode;
    process.exit(typeof code === 'number' ? code : Number(code ?? 0) || 0);
  });
}
