/**
 * xstate v5 machine of one fanout job (GwMO-FORA-001/002, notes §1.5): it counts legs as they
 * report and decides when the job is over (every member final, cancelled, or past the abort ratio).
 * The members' results do not live in its context: they go straight to the job's result map and
 * LevelDB, so a leg costs one small counter update here, not a copy of thousands of results; and a
 * leg is a partition of members (see `FanoutJobEvent`), so that update is rare too.
 * Each leg's outcome is also sent to the member's association actor (reachability); members behind
 * a child gateway run in the child's own fanout job (recursive aggregation).
 */
import { assign, setup } from 'xstate';

/** Final job states (State leaf values, notes §1.5). */
export const JOB_STATE = { idle: 10, running: 20, completed: 30, completedWithFailures: 40, cancelled: 50, failed: 60 } as const;

/** Input of a job actor. */
export interface FanoutJobInput {
  name: string;
  total: number;
  /** Results already known (a job resumed after a restart). */
  succeeded: number;
  failed: number;
  /** Percentage of failed members past which the job stops (0: never). */
  abortOnFailRatio: number;
}

/**
 * Events of a job actor. A leg is a partition of members run together (one device, one delegation
 * to a child gateway, or up to `PARTITION` devices of this gateway): it reports once, with counts,
 * so a job over 100,000 members takes a few hundred transitions, not 100,000.
 */
export type FanoutJobEvent = { type: 'leg.done'; ok: number; failed: number } | { type: 'cancel' };

interface Ctx extends FanoutJobInput {
  done: number;
  /** The server cancelled: legs not started are skipped (215); running ones are awaited. */
  cancelled: boolean;
  /** Past the abort ratio: the same, ending as Failed. */
  aborted: boolean;
  outcome: number;
}

/** One fanout job as an actor; its output is the final State value. */
export const fanoutJobMachine = setup({
  types: { context: {} as Ctx, input: {} as FanoutJobInput, events: {} as FanoutJobEvent, output: {} as { state: number } },
  guards: {
    allDone: ({ context }) => context.done >= context.total,
    newlyPastAbortRatio: ({ context }) =>
      !context.aborted && context.abortOnFailRatio > 0 && (context.failed * 100) / Math.max(1, context.total) > context.abortOnFailRatio,
    cancelled: ({ context }) => context.cancelled,
    aborted: ({ context }) => context.aborted,
  },
}).createMachine({
  id: 'fanout',
  context: ({ input }) => ({ ...input, done: input.succeeded + input.failed, cancelled: false, aborted: false, outcome: JOB_STATE.running }),
  initial: 'running',
  states: {
    running: {
      always: [
        { guard: 'newlyPastAbortRatio', actions: assign({ aborted: true }) },
        { guard: 'allDone', target: 'settled' },
      ],
      on: {
        'leg.done': {
          actions: assign(({ context, event }) => ({
            done: context.done + event.ok + event.failed,
            succeeded: context.succeeded + event.ok,
            failed: context.failed + event.failed,
          })),
        },
        cancel: { actions: assign({ cancelled: true }) },
      },
    },
    settled: {
      always: [{ guard: 'cancelled', target: 'cancelled' }, { guard: 'aborted', target: 'aborted' }, { target: 'completed' }],
    },
    completed: {
      type: 'final',
      entry: assign({ outcome: ({ context }) => (context.failed > 0 ? JOB_STATE.completedWithFailures : JOB_STATE.completed) }),
    },
    aborted: { type: 'final', entry: assign({ outcome: JOB_STATE.failed }) },
    cancelled: { type: 'final', entry: assign({ outcome: JOB_STATE.cancelled }) },
  },
  output: ({ context }) => ({ state: context.outcome }),
});
