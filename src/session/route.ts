/**
 * Rewriting of commands and results for devices reached through a gateway (GwMO proxy mode):
 * a command for `./DevInfo/Mod` on a device mounted at `./GwMO/Devices/d0001` of its gateway is
 * sent to the gateway as `./GwMO/Devices/d0001/DevInfo/Mod`, and the results come back with the
 * prefix removed, so the operator only ever sees the device's own URIs.
 */
import type { Item, LocRef } from '../codec/model.ts';
import type { Outgoing } from './common.ts';

/** `./A/B` under `prefix` (`.` maps to the prefix itself); query parts such as `?list=` are kept. */
export function prefixUri(prefix: string, uri: string): string {
  const q = uri.indexOf('?');
  const path = q >= 0 ? uri.slice(0, q) : uri;
  const query = q >= 0 ? uri.slice(q) : '';
  const rel = path.replace(/^\.\/?/, '');
  return (rel ? `${prefix}/${rel}` : prefix) + query;
}

/** The inverse of prefixUri; URIs outside the prefix are returned unchanged. */
export function stripPrefix(prefix: string, uri: string): string {
  if (uri === prefix || uri.startsWith(prefix + '?')) return '.' + uri.slice(prefix.length);
  if (uri.startsWith(prefix + '/')) return './' + uri.slice(prefix.length + 1);
  return uri;
}

const mapLoc = (f: (u: string) => string, r: LocRef | undefined): LocRef | undefined => (r ? { ...r, locURI: f(r.locURI) } : r);

function mapItem(f: (u: string) => string, it: Item): Item {
  const out: Item = { ...it };
  if (it.target) out.target = mapLoc(f, it.target)!;
  if (it.source) out.source = mapLoc(f, it.source)!;
  return out;
}

/** Rewrites every Target/Source URI of a command (recursively through Atomic/Sequence). */
export function mapCommandUris(c: Outgoing, f: (u: string) => string): Outgoing {
  if ('commands' in c) return { ...c, commands: c.commands.map((x) => ({ ...mapCommandUris(x as Outgoing, f), cmdID: x.cmdID })) } as Outgoing;
  if ('items' in c) return { ...c, items: c.items.map((i) => mapItem(f, i)) } as Outgoing;
  return c;
}

/** Rewrites the URIs of result items. */
export function mapItems(items: Item[], f: (u: string) => string): Item[] {
  return items.map((i) => mapItem(f, i));
}
