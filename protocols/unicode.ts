/**
 * Whether a string is well-formed UTF-16 (no surrogate without its pair):
 * JSON can carry a lone surrogate, UTF-8 cannot. Native in Node 20
 * (String.prototype.isWellFormed), but not in the ES2023 lib this project
 * compiles against, hence the cast.
 */
export const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

