/**
 * The QRC error table: the JSON-RPC 2.0 codes plus the QRC-specific ones, as the public QRC
 * documentation lists them. `QrcRpcError` carries one of them out of a method handler.
 */
export const QRC_ERR = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  SERVER_ERROR: -32603,
  /** The Core is the standby half of a redundant pair. */
  STANDBY: -32604,
  INVALID_PAGE_REQUEST_ID: 2,
  BAD_PAGE_REQUEST: 3,
  MISSING_FILE: 4,
  CHANGE_GROUPS_EXHAUSTED: 5,
  UNKNOWN_CHANGE_GROUP: 6,
  UNKNOWN_COMPONENT: 7,
  UNKNOWN_CONTROL: 8,
  ILLEGAL_MIXER_CHANNEL: 9,
  LOGON_REQUIRED: 10,
} as const;

export type QrcErrorCode = (typeof QRC_ERR)[keyof typeof QRC_ERR];

/** The short text each code goes with (the `message` starts with it). */
export const QRC_ERR_TEXT: Readonly<Record<QrcErrorCode, string>> = Object.freeze({
  [-32700]: 'Parse error',
  [-32600]: 'Invalid request',
  [-32601]: 'Method not found',
  [-32602]: 'Invalid params',
  [-32603]: 'Server error',
  [-32604]: 'Core is on Standby',
  2: 'Invalid Page Request ID',
  3: 'Bad Page Request',
  4: 'Missing file',
  5: 'Change Groups exhausted',
  6: 'Unknown change group',
  7: 'Unknown component name',
  8: 'Unknown control',
  9: 'Illegal mixer channel index',
  10: 'Logon required',
});

export class QrcRpcError extends Error {
  readonly rpcCode: QrcErrorCode;
  constructor(rpcCode: QrcErrorCode, detail?: string) {
    super(detail ? `${QRC_ERR_TEXT[rpcCode]}: ${detail}` : QRC_ERR_TEXT[rpcCode]);
    this.name = 'QrcRpcError';
    this.rpcCode = rpcCode;
  }
}
