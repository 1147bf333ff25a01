/**
 * The one place that loads @peculiar/x509 (it needs the reflect-metadata polyfill first and a
 * WebCrypto provider). Everything else in firmware/pki imports from here.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as never);

export { x509 };
export { EC_P256 } from './ec.js';
