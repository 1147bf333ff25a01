/**
 * QDP query_ref matching and ref helpers. Pure.
 *
 * A query_ref is a pattern over refs such as `device.ioframe.<name>` or `control.<design>.<role>`.
 * The only special character is `*`, which stands for any run of characters, the empty run and
 * dots included (`device.ioframe*`, `device.*`, `control.*.*`). Everything else, dots too, must
 * match exactly, case included, and the pattern must cover the whole ref.
 */

/** The device ref a peripheral answers to: `device.<type>.<name>`. */
export function deviceRef(type: string, name: string): string {
  return `device.${type}.${name}`;
}

/** The control ref of a device that belongs to a design: `control.<designCode>.<role>`. */
export function controlRef(designCode: string, role: string): string {
  return `control.${designCode}.${role}`;
}

/** What a query is matched against: our own identity. */
export interface QdpQuerySelf {
  name: string;
  type: string;
  /** Design we belong to, if any; without one only the device ref can match. */
  designCode?: string | null;
  /** Our role in that design; when missing the device name is used (peripherals use their name). */
  role?: string | null;
}

/**
 * Does `pattern` (with `*` wildcards) match all of `subject`? Backtracks only to the last star,
 * so work is bounded by pattern length x subject length (no regex, no exponential blow-up).
 */
export function globMatch(pattern: string, subject: string): boolean {
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < subject.length) {
    if (p < pattern.length && pattern[p] === '*') {
      starP = p++;
      starS = s;
    } else if (p < pattern.length && pattern[p] === subject[s]) {
      p++;
      s++;
    } else if (starP >= 0) {
      p = starP + 1;
      s = ++starS;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * Should we answer this query_ref? True when it matches our device ref, or, when we are assigned
 * to a design, our control ref.
 */
export function queryMatches(queryRef: string, self: QdpQuerySelf): boolean {
  if (globMatch(queryRef, deviceRef(self.type, self.name))) return true;
  if (!self.designCode) return false;
  return globMatch(queryRef, controlRef(self.designCode, self.role ? self.role : self.name));
}

const QDP_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Q-SYS style device name (a hostname label): 1..63 letters, digits, hyphens; no hyphen at either end. */
export function isValidQdpName(name: string): boolean {
  return QDP_NAME_RE.test(name);
}
