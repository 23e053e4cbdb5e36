/**
 * The typed SyncML DM message model (OMA-TS-DM_RepPro 1.2, SyncML RepPro 1.2 DTD). Only the
 * elements used by OMA DM are modelled; SyncML data-sync commands (Sync, Map, Put, Search, Move)
 * decode to an `Unsupported` command so the receiver can answer it with a status instead of
 * rejecting the whole message.
 */

/** A Data value: text (XML, or b64 text) or raw bytes (WBXML OPAQUE). */
export type DataValue = string | Uint8Array;

/** MetInf fields used by DM (§3.8 of the notes). */
export interface Meta {
  format?: string;
  type?: string;
  mark?: string;
  size?: number;
  nextNonce?: string;
  version?: string;
  maxMsgSize?: number;
  maxObjSize?: number;
  emi?: string[];
}

/** A Target or Source. */
export interface LocRef {
  locURI: string;
  locName?: string;
}

/** One Item of a command. */
export interface Item {
  target?: LocRef;
  source?: LocRef;
  targetParent?: LocRef;
  sourceParent?: LocRef;
  meta?: Meta;
  data?: DataValue;
  moreData?: boolean;
}

/** Credentials; in DM only in the SyncHdr. */
export interface Cred {
  meta?: Meta;
  data: string;
}

/** An authentication challenge carried in a Status. */
export interface Chal {
  meta: Meta;
}

/** The SyncHdr. */
export interface SyncHdr {
  verDTD: string;
  verProto: string;
  sessionID: string;
  msgID: string;
  target: LocRef;
  source: LocRef;
  respURI?: string;
  noResp?: boolean;
  cred?: Cred;
  meta?: Meta;
}

interface CommandBase {
  cmdID: string;
  noResp?: boolean;
}

/** Add, Replace, Copy: items carry Target (and Source for Copy) and Data. */
export interface ItemCommand extends CommandBase {
  kind: 'Add' | 'Replace' | 'Copy';
  meta?: Meta;
  items: Item[];
}

/** Get. */
export interface GetCommand extends CommandBase {
  kind: 'Get';
  lang?: string;
  meta?: Meta;
  items: Item[];
}

/** Delete. */
export interface DeleteCommand extends CommandBase {
  kind: 'Delete';
  archive?: boolean;
  sftDel?: boolean;
  meta?: Meta;
  items: Item[];
}

/** Exec; a Correlator asks for an asynchronous result by Generic Alert. */
export interface ExecCommand extends CommandBase {
  kind: 'Exec';
  meta?: Meta;
  correlator?: string;
  items: Item[];
}

/** Alert; Data is the alert code. */
export interface AlertCommand extends CommandBase {
  kind: 'Alert';
  data?: string;
  correlator?: string;
  items: Item[];
}

/** Atomic or Sequence: a container of commands. */
export interface ContainerCommand extends CommandBase {
  kind: 'Atomic' | 'Sequence';
  meta?: Meta;
  commands: Command[];
}

/** Results of a Get. */
export interface ResultsCommand {
  kind: 'Results';
  cmdID: string;
  msgRef?: string;
  cmdRef: string;
  meta?: Meta;
  targetRef?: string;
  sourceRef?: string;
  items: Item[];
}

/** A Status for a command (or for the SyncHdr when cmdRef is "0"). */
export interface StatusCommand {
  kind: 'Status';
  cmdID: string;
  msgRef: string;
  cmdRef: string;
  cmd: string;
  targetRefs: string[];
  sourceRefs: string[];
  cred?: Cred;
  chal?: Chal;
  data: string;
  items: Item[];
}

/** A SyncML command that DM does not use; answered with a status, never executed. */
export interface UnsupportedCommand {
  kind: 'Unsupported';
  name: string;
  cmdID: string;
}

/** Any command in a SyncBody. */
export type Command =
  | ItemCommand
  | GetCommand
  | DeleteCommand
  | ExecCommand
  | AlertCommand
  | ContainerCommand
  | ResultsCommand
  | StatusCommand
  | UnsupportedCommand;

/** Commands that operate on the management tree (allowed inside Atomic/Sequence). */
export type OperationCommand = ItemCommand | GetCommand | DeleteCommand | ExecCommand | AlertCommand | ContainerCommand;

/** A whole SyncML message. */
export interface SyncMLMessage {
  hdr: SyncHdr;
  body: Command[];
  final: boolean;
}

/** The wire encodings a DM message can travel in. */
export type Encoding = 'xml' | 'wbxml';
