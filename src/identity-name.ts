import { FacestreamError } from './errors.js';

/**
 * The one rule for identity names, wherever a name enters (CLI, REST, import, live enrollment):
 * names are text a person typed and other people read.
 *
 * - Normalised: Unicode NFC (so "é" typed two ways is one name), surrounding white space removed,
 *   runs of spaces inside collapsed to one space.
 * - Refused, with the character's position: control characters (C0, DEL, C1: tab, vertical tab,
 *   CR/LF, NUL...), line and paragraph separators, bidirectional overrides and isolates (they
 *   reorder what a viewer shows), other invisible format characters (zero-width space, soft
 *   hyphen...), lone surrogates and Unicode noncharacters. Joiners (U+200C, U+200D, used by
 *   emoji sequences and by Indic and Persian scripts) and emoji tag characters are allowed.
 * - Length: 1 to NAME_MAX_CHARACTERS characters as a person counts them (grapheme clusters:
 *   "👩‍👩‍👧" is one), the same count in the CLI and the REST API. Positions in errors count the same way, from 1.
 */
export const NAME_MAX_CHARACTERS = 256;

const ALLOWED_FORMAT = new Set([0x200c, 0x200d]);
const segmenter = new Intl.Segmenter('en', { granularity: 'grapheme' });

/** Why a code point may not appear in a name, or undefined when it may. */
function refusedBecause(cp: number): string | undefined {
  if (cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)) return 'a control character';
  if (cp === 0x2028 || cp === 0x2029) return 'a line or paragraph separator';
  if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp === 0x200e || cp === 0x200f || cp === 0x061c) return 'a bidirectional control character';
  if (cp >= 0xd800 && cp <= 0xdfff) return 'a lone surrogate (broken UTF-16)';
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return 'a Unicode noncharacter';
  if (cp >= 0xe0020 && cp <= 0xe007f) return undefined; // emoji tag sequences (subdivision flags)
  if (!ALLOWED_FORMAT.has(cp) && /\p{Cf}/u.test(String.fromCodePoint(cp))) return 'an invisible format character';
  return undefined;
}

/** What a code point is called in an error: U+000B plus a common name where there is one. */
function describe(cp: number): string {
  const names: Record<number, string> = { 0: 'NUL', 9: 'tab', 10: 'line feed', 11: 'vertical tab', 12: 'form feed', 13: 'carriage return', 0x1b: 'escape', 0x7f: 'delete', 0x200b: 'zero-width space', 0x202e: 'right-to-left override', 0xad: 'soft hyphen', 0xfeff: 'byte order mark' };
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return names[cp] ? `${hex} (${names[cp]})` : hex;
}

/** Characters of a name as a person counts them (grapheme clusters). */
export function nameLength(name: string): number {
  let n = 0;
  for (const _ of segmenter.segment(name)) n++;
  return n;
}

/**
 * A name by the product's rule (see above): the normalised name, or a BAD_REQUEST error saying
 * which character at which position (1-based, in characters) is refused, or what length is wrong.
 */
export function normalizeIdentityName(input: string): string {
  let position = 0;
  for (const { segment } of segmenter.segment(input)) {
    position++;
    for (const ch of segment) {
      const cp = ch.codePointAt(0)!;
      const why = refusedBecause(cp);
      if (why) {
        throw new FacestreamError('BAD_REQUEST', `identity name has ${why}, ${describe(cp)}, at character ${position}: names may hold letters, digits, spaces, punctuation and emoji`, {
          name: input,
          position,
          codePoint: cp,
        });
      }
    }
  }
  const name = input.normalize('NFC').trim().replace(/\p{Zs}+/gu, ' ');
  const length = nameLength(name);
  if (length === 0 || length > NAME_MAX_CHARACTERS) {
    throw new FacestreamError('BAD_REQUEST', `an identity name must have 1 to ${NAME_MAX_CHARACTERS} characters (this one has ${length})`, { name: input, length, max: NAME_MAX_CHARACTERS });
  }
  return name;
}

/**
 * Text safe to draw or print whatever a name holds (names stored before this rule, or by an
 * older version): characters a name may not hold become U+FFFD, so a label never breaks SVG/XML
 * or reorders a display.
 */
export function displayText(text: string): string {
  let out = '';
  for (const ch of text) out += refusedBecause(ch.codePointAt(0)!) ? '\uFFFD' : ch;
  return out;
}
