/** IPv4 address helpers shared by the sender, the receiver and their worker threads. */

/** True for an IPv4 multicast address (224.0.0.0/4). */
export function isMulticast(a: string): boolean {
  const f = Number(a.split('.')[0]);
  return f >= 224 && f <= 239;
}
