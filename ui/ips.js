//! Trusted-IP entries (addresses and CIDR blocks, IPv4 and IPv6) checked as they are typed, before
//! the gateway is asked. Pure: no DOM, no API.

function isIPv4(s) {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

function isIPv6(s) {
  if (!s.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  let rest = s;
  if (s.includes('.')) {
    const i = s.lastIndexOf(':');
    if (!isIPv4(s.slice(i + 1))) return false;
    rest = s.slice(0, i + 1) + '0:0'; // the dotted tail stands for two groups
  }
  const hex = (g) => /^[0-9A-Fa-f]{1,4}$/.test(g);
  const halves = rest.split('::');
  if (halves.length > 2) return false;
  if (halves.length === 2) {
    const groups = halves.flatMap((x) => (x === '' ? [] : x.split(':')));
    return groups.every(hex) && groups.length <= 7;
  }
  const groups = rest.split(':');
  return groups.length === 8 && groups.every(hex);
}

/** Why one trusted-IP entry is not an address or CIDR block, or null when it is. */
export function ipProblem(entry) {
  const [addr, prefix, extra] = entry.split('/');
  if (extra !== undefined) return `'${entry}' has more than one '/'`;
  const v4 = isIPv4(addr);
  if (!v4 && !isIPv6(addr)) return `'${entry}' is not an IPv4 or IPv6 address or CIDR block`;
  if (prefix !== undefined) {
    const max = v4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) {
      return `'${entry}': the prefix length must be 0 to ${max}`;
    }
  }
  return null;
}

export function ipEntries(text) {
  return text.split(/[\s,]+/).filter((s) => s !== '');
}
