/** ECDSA P-256 with SHA-256: the only key type the device identity uses. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
