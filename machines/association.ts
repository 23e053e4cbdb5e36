/**
 * xstate v5 machine of one end-device association (GwMO-MOO-001): its attachment state as the
 * gateway observes it through southbound sessions, and its management mode. Rebuilt from the
 * association record on start (initial state from the stored status); every change is reported
 * through `onChange`, which persists it and updates the inventory (the record is the truth).
 */
import { assign, setup } from 'xstate';

/** Modes of an association. */
export type AssociationMode = 'transparent' | 'proxy' | 'adaptation';
/** Attachment states. */
export type AttachState = 'pending' | 'attached' | 'detached';

/** Input of an association actor. */
export interface AssociationInput {
  deviceId: string;
  mode: AssociationMode;
  status: AttachState | 'sleeping';
  /** A child gateway: only transparent or proxy mode (GwMO-MOO-002). */
  gateway: boolean;
  /** Consecutive failures before a device counts as detached. */
  maxFailures?: number;
  onChange?: (change: { deviceId: string; status?: AttachState; mode?: AssociationMode }) => void;
}

/** Events an association actor understands. */
export type AssociationEvent =
  | { type: 'session.ok' }
  | { type: 'session.failed' }
  | { type: 'mode.set'; mode: AssociationMode }
  | { type: 'detach' };

interface Ctx extends AssociationInput {
  failures: number;
}

/** One association as an actor. */
export const associationMachine = setup({
  types: { context: {} as Ctx, input: {} as AssociationInput, events: {} as AssociationEvent },
  guards: {
    storedAttached: ({ context }) => context.status === 'attached' || context.status === 'sleeping',
    storedDetached: ({ context }) => context.status === 'detached',
    tooManyFailures: ({ context }) => context.failures + 1 >= (context.maxFailures ?? 1),
    modeAllowed: ({ context, event }) => event.type === 'mode.set' && !(context.gateway && event.mode === 'adaptation'),
  },
  actions: {
    report: ({ context }, params: { status: AttachState }) => context.onChange?.({ deviceId: context.deviceId, status: params.status }),
  },
}).createMachine({
  id: 'association',
  context: ({ input }) => ({ ...input, failures: 0 }),
  initial: 'restoring',
  states: {
    restoring: {
      always: [{ guard: 'storedAttached', target: 'attached' }, { guard: 'storedDetached', target: 'detached' }, { target: 'pending' }],
    },
    pending: {
      on: {
        'session.ok': { target: 'attached', actions: { type: 'report', params: { status: 'attached' } } },
        'session.failed': [
          { guard: 'tooManyFailures', target: 'detached', actions: { type: 'report', params: { status: 'detached' } } },
          { actions: assign({ failures: ({ context }) => context.failures + 1 }) },
        ],
        detach: { target: 'detached', actions: { type: 'report', params: { status: 'detached' } } },
      },
    },
    attached: {
      entry: assign({ failures: 0 }),
      on: {
        'session.failed': [
          { guard: 'tooManyFailures', target: 'detached', actions: { type: 'report', params: { status: 'detached' } } },
          { actions: assign({ failures: ({ context }) => context.failures + 1 }) },
        ],
        detach: { target: 'detached', actions: { type: 'report', params: { status: 'detached' } } },
      },
    },
    detached: {
      on: {
        'session.ok': { target: 'attached', actions: { type: 'report', params: { status: 'attached' } } },
      },
    },
  },
  on: {
    'mode.set': {
      guard: 'modeAllowed',
      actions: [
        assign({ mode: ({ event }) => event.mode }),
        ({ context, event }) => context.onChange?.({ deviceId: context.deviceId, mode: event.mode }),
      ],
    },
  },
});
