/**
 * Topologies: load and validate a topology file, start it in this process. The embedding API
 * (`import { loadTopology, startTopology } from 'gwmo'`) re-exports these.
 */
import { readFile } from 'node:fs/promises';
import { parseConfig } from '../config.ts';
import { GwError } from '../errors.ts';
import { topologySchema, type Topology } from './schema.ts';

export { topologyJsonSchema, topologySchema, type Topology, type TopologyGateway, type TopologyInput } from './schema.ts';
export { derivedSecret, startTopology, type RunningTopology, type StartOptions } from './start.ts';

/** Validates topology YAML text; errors name `file`, the line and the field. */
export function parseTopology(text: string, file = 'topology.yaml'): Topology {
  return parseConfig(text, topologySchema, file);
}

/** Reads and validates a topology file. */
export async function loadTopology(file: string): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new GwError('TOPOLOGY_READ', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseTopology(text, file);
}
