/**
 * Counters an operator can watch (issue "Security and reliability", point 6), in Prometheus text
 * format at `/metrics` (prom-client). Each DM server (the operator's server, and each gateway's
 * southbound server) has its own registry, so several in one process never mix their figures.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The metrics of one DM server (and, for a gateway, its own figures registered on the same registry). */
export class DmMetrics {
  readonly registry = new Registry();
  /** Sessions ended, by how they ended (completed, auth-failed, timeout, aborted-by-client, ...). */
  readonly sessions: Counter<'outcome'>;
  /** Failed authentications, by kind: credentials, unknown_device, certificate. */
  readonly authFailures: Counter<'kind'>;
  /** Messages refused before any session logic, by reason: too_large, malformed, content_type, certificate. */
  readonly rejected: Counter<'reason'>;
  /** Failure replies held back by the brute-force guard. */
  readonly authHeld: Counter;

  constructor(opts: { labels?: Record<string, string>; processMetrics?: boolean; openSessions: () => number }) {
    if (opts.labels) this.registry.setDefaultLabels(opts.labels);
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'gwmo_process_' });
    this.sessions = new Counter({ name: 'gwmo_dm_sessions_total', help: 'DM sessions ended, by outcome', labelNames: ['outcome'], registers: [this.registry] });
    this.authFailures = new Counter({ name: 'gwmo_auth_failures_total', help: 'failed authentications, by kind', labelNames: ['kind'], registers: [this.registry] });
    this.authHeld = new Counter({ name: 'gwmo_auth_held_replies_total', help: 'authentication failure replies held back by the brute-force guard', registers: [this.registry] });
    this.rejected = new Counter({ name: 'gwmo_rejected_messages_total', help: 'messages refused before session logic, by reason', labelNames: ['reason'], registers: [this.registry] });
    const open = opts.openSessions;
    new Gauge({
      name: 'gwmo_dm_sessions_open',
      help: 'DM sessions open now',
      registers: [this.registry],
      collect() {
        this.set(open());
      },
    });
  }

  /** The registry in Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The Content-Type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
