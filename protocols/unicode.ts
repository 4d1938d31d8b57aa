/**
 * Whether a string is well-formed UTF-16 (no surrogate without its pair):
 * JSON can carry a lone surrogate, UTF-8 cannot. Native in Node 20
 * (String.prototype.isWellFormed), but not in the ES2023 lib this project
 * compiles against, hence the cast.
 */
export const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** The string with each lone surrogate replaced by U+FFFD (String.prototype.toWellFormed), so it can be written as UTF-8. */
export const toWellFormed = (s: string): string => (s as unknown as { toWellFormed(): string }).toWellFormed();


/** A cut can split a surrogate pair: the text without a high surrogate left at its end (UTF-8 cannot encode a lone half). */
export function dropLoneSurrogate(text: string): string {
  const last = text.charCodeAt(text.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? text.slice(0, -1) : text;
}
