/**
 * One error type for the whole runtime. Every error carries a stable string code (grouped by layer
 * prefix: CODEC_, AUTH_, TREE_, SESSION_, STORE_, HTTP_, CONFIG_, CLI_) and, where the failure maps
 * to an OMA DM status, that SyncML status code so a caller can put it straight into a Status element.
 */
export class GwError extends Error {
  /** Stable machine-readable code, e.g. `CODEC_XML_DTD` or `TREE_NOT_FOUND`. */
  readonly code: string;
  /** The SyncML status code this failure maps to (OMA-TS-DM_RepPro §"Response Status Codes"), if any. */
  readonly status: number | undefined;

  constructor(code: string, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GwError';
    this.code = code;
    this.status = options.status;
  }
}

/** An error that is a DM status by nature (404, 405, 418, 425 ...): thrown by the tree and the command executor. */
export class DmStatusError extends GwError {
  constructor(status: number, code: string, message: string) {
    super(code, message, { status });
    this.name = 'DmStatusError';
  }
}

/** Errors raised while decoding or encoding SyncML, WBXML or Package 0 bytes. */
export class CodecError extends GwError {
  constructor(code: string, message: string, status = 400) {
    super(code, message, { status });
    this.name = 'CodecError';
  }
}

/** Returns the DM status an unknown thrown value maps to: its own status when it has one, else 500. */
export function statusOf(err: unknown): number {
  if (err instanceof GwError && err.status !== undefined) return err.status;
  return 500;
}

/** Returns a one-line description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof GwError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
