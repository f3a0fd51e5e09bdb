// Streaming detokenization: turns ids into text one id at a time, emitting only text that a full decode
// would also produce. Two things make naive per-token decoding wrong:
//  - byte-fallback pieces (<0xF0><0x9F>…) are parts of one character, so nothing is emitted until the
//    bytes form whole characters (a trailing U+FFFD means "incomplete");
//  - SentencePiece decoders strip the leading space of the first piece, so a piece decoded alone loses
//    its space. We decode a small window that starts at already-emitted tokens and emit only the text
//    that the window's decode adds past the already-emitted part (the approach of HF text-generation-inference).

export interface Decoder {
  decode(ids: ArrayLike<number>): string;
}

const REPLACEMENT = '\uFFFD';

export class StreamingDetokenizer {
  private readonly ids: number[];
  /** Start of the decode window. */
  private prefixOffset: number;
  /** Ids before this index have had their text emitted. */
  private readOffset: number;

  /**
   * @param context ids that precede the stream (the prompt's tail): their text is not emitted, but it
   *   decides the spacing of the first streamed piece exactly as in a decode of prompt + output.
   */
  constructor(private readonly tokenizer: Decoder, context: readonly number[] = []) {
    this.ids = [...context];
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** Adds one id; returns the newly stable text ('' while bytes of a character are still missing). */
  push(id: number): string {
    this.ids.push(id);
    const window = this.ids.slice(this.prefixOffset);
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const newText = this.tokenizer.decode(window);
    if (newText.length > prefixText.length && !newText.endsWith(REPLACEMENT)) {
      const out = newText.slice(prefixText.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return out;
    }
    return '';
  }

  /** At the end of the stream: whatever a full decode shows that was held back (invalid bytes → U+FFFD). */
  flush(): string {
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const newText = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return newText.length > prefixText.length ? newText.slice(prefixText.length) : '';
  }
}
