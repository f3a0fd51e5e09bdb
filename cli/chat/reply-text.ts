// A reply's text as a terminal shows it, piece by piece as it streams: control characters (escape sequences
// too) removed, tabs as spaces, and no leading or trailing whitespace (templates put the reply after a space
// or a newline; the session keeps it trimmed) — whitespace is held back until text follows it.

// C0 and C1 controls except tab and newline.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

export function terminalText(text: string): string {
  return text.replace(CONTROL, '').replace(/\t/g, '    ');
}

export class ReplyText {
  private started = false;
  private pending = '';

  /** The part of the text so far that is safe to show now. */
  push(piece: string): string {
    const text = terminalText(piece);
    const body = text.trimEnd();
    if (body === '') {
      if (this.started) this.pending += text;
      return '';
    }
    const out = this.started ? this.pending + body : body.trimStart();
    this.started = true;
    this.pending = text.slice(body.length);
    return out;
  }
}
