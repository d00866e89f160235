/** Treatment of a failed statement by the COPY sink: isolate the row, retry, or fail. */
export type FailureKind = 'data' | 'transient' | 'permanent';

/**
 * SQLSTATE classes that blame a row rather than the server: data exceptions (22), integrity
 * constraint violations (23), program limits such as an oversized value (54) and PL/pgSQL
 * errors (P0), which is what a validating trigger's RAISE EXCEPTION reports.
 */
const DATA_ERROR_CLASSES = new Set(['22', '23', '54', 'P0']);

/**
 * SQLSTATE classes and codes that a later retry can clear: connection exceptions (08),
 * insufficient resources (53), operator intervention such as a server shutdown (57), system
 * errors (58) and transaction rollbacks such as deadlocks (40).
 */
const TRANSIENT_ERROR_CLASSES = new Set(['08', '40', '53', '57', '58']);

/** SQLSTATE codes outside those classes that a retry can clear: 55P03, raised by lock_timeout. */
const TRANSIENT_ERROR_CODES = new Set(['55P03']);

/** Socket error codes of a connection that failed or was cut, which a retry can clear. */
export const TRANSIENT_NODE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** Classifies an error from node-postgres or the socket under it. */
export function classifyFailure(error: unknown): FailureKind {
  const code = (error as { code?: unknown }).code;

  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    const errorClass = code.slice(0, 2);

    if (DATA_ERROR_CLASSES.has(errorClass)) {
      return 'data';
    }

    if (TRANSIENT_ERROR_CODES.has(code)) {
      return 'transient';
    }

    return TRANSIENT_ERROR_CLASSES.has(errorClass) ? 'transient' : 'permanent';
  }

  if (typeof code === 'string' && TRANSIENT_NODE_CODES.has(code)) {
    return 'transient';
  }

  // node-postgres reports a dropped connection as a plain Error without a code ("Connection
  // terminated unexpectedly", "Client has encountered a connection error").
  return 'transient';
}
