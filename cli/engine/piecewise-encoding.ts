// Long texts through SentencePiece-style BPE tokenizers (Llama 1/2, Mistral, llama2.c: no pre-tokenizer, so the
// whole text is one BPE word). @huggingface/tokenizers' BPE costs ~30 µs per character there (43 s for
// WikiText-2's test split), so the text is cut into words where no merge can cross, each distinct word is
// encoded once, and the ids are joined: exactly the ids of one encode() call, in ~1 s.
//
// Why it is exact: a BPE merge can only join two symbols if the merged token, which contains the two
// characters on either side of the join, exists. So a boundary between characters a and b that no vocabulary
// token (nor merge result) contains as the pair "ab" is never crossed, and the two sides encode independently.
// The cuts are before spaces (normalized to "▁") whose left neighbour never precedes a "▁" inside a token. A
// later word is encoded behind a "\n", which no token longer than one character contains, to keep the
// normalizer's Prepend("▁") off the word; the ids of "\n" alone are then dropped.

const SPACE_MARK = '\u2581';
const SHIELD = '\n';

interface TokenizerJson {
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  added_tokens?: { content?: unknown }[];
  model?: { type?: unknown; vocab?: unknown; merges?: unknown };
}

/** The normalizer this applies to: Prepend("▁") and Replace(" " → "▁"), alone or in a Sequence. */
function isSpaceMarkNormalizer(n: unknown): boolean {
  const step = (s: { type?: unknown; prepend?: unknown; pattern?: { String?: unknown }; content?: unknown }) =>
    (s.type === 'Prepend' && s.prepend === SPACE_MARK) ||
    (s.type === 'Replace' && s.pattern?.String === ' ' && s.content === SPACE_MARK);
  if (!n || typeof n !== 'object') return false;
  const seq = n as { type?: unknown; normalizers?: unknown };
  if (seq.type === 'Sequence') return Array.isArray(seq.normalizers) && seq.normalizers.every((s) => s && step(s));
  return step(n as object);
}

/** The UTF-16 units that stand right before a "▁" inside some token: a cut between them and "▁" isn't safe. */
function unitsBeforeMark(tokens: string[]): Set<string> {
  const units = new Set<string>();
  for (const token of tokens) {
    for (let i = token.indexOf(SPACE_MARK, 1); i !== -1; i = token.indexOf(SPACE_MARK, i + 1)) units.add(token[i - 1]);
  }
  return units;
}

export class PiecewiseEncoder {
  private shieldIds: number[] | null = null;

  private constructor(private readonly unsafeBeforeSpace: Set<string>, private readonly addedTokens: string[]) {}

  /** An encoder for this tokenizer.json, or null when its layout isn't one this is exact for. */
  static forTokenizer(json: TokenizerJson): PiecewiseEncoder | null {
    const model = json.model;
    if (!model || model.type !== 'BPE' || json.pre_tokenizer != null || !isSpaceMarkNormalizer(json.normalizer)) return null;
    if (!model.vocab || typeof model.vocab !== 'object' || !Array.isArray(model.merges)) return null;
    const added = (json.added_tokens ?? []).map((t) => t.content);
    if (added.some((c) => typeof c !== 'string' || c.includes(' '))) return null;
    const merged = (model.merges as unknown[]).map((m) => (Array.isArray(m) ? m.join('') : String(m).replace(' ', '')));
    const tokens = [...Object.keys(model.vocab as object), ...merged, ...(added as string[])];
    if (tokens.some((t) => t.length > 1 && t.includes(SHIELD))) return null;
    return new PiecewiseEncoder(unitsBeforeMark(tokens), added as string[]);
  }

  /**
   * The text cut before every space whose left neighbour never forms a token with "▁", except right after an
   * added token: the library normalizes the text between added tokens as separate texts (each gets the
   * Prepend), so what follows one must be encoded in the same call.
   */
  split(text: string): string[] {
    const pieces: string[] = [];
    let start = 0;
    for (let i = text.indexOf(' ', 1); i !== -1; i = text.indexOf(' ', i + 1)) {
      const left = text[i - 1];
      if (left === ' ' || this.unsafeBeforeSpace.has(left) || this.addedTokens.some((t) => text.endsWith(t, i))) continue;
      pieces.push(text.slice(start, i));
      start = i;
    }
    pieces.push(text.slice(start));
    return pieces;
  }

  /**
   * The ids `encodePlain` (one call, no special tokens) gives for the whole text, or null when a piece
   * doesn't encode as expected (the caller then encodes the text in one call).
   */
  encode(text: string, encodePlain: (text: string) => number[]): number[] | null {
    const pieces = this.split(text);
    if (pieces.length === 1) return encodePlain(text);
    this.shieldIds ??= encodePlain(SHIELD);
    const shield = this.shieldIds;
    const ids = encodePlain(pieces[0]);
    const seen = new Map<string, number[]>();
    for (let p = 1; p < pieces.length; p++) {
      let word = seen.get(pieces[p]);
      if (!word) {
        const shielded = encodePlain(SHIELD + pieces[p]);
        if (!shield.every((id, i) => shielded[i] === id)) return null;
        word = shielded.slice(shield.length);
        seen.set(pieces[p], word);
      }
      for (const id of word) ids.push(id);
    }
    return ids;
  }
}
