/**
 * DM bootstrap messages: WBXML that libwbxml reads back, a MAC computed independently here
 * (HMAC-SHA1 keyed by the PIN over the exact bytes), and refusal of wrong PINs, tampering and
 * commands other than Add/Replace.
 */
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { accountNodes, bootstrapParams, decodeBootstrap, encodeBootstrap } from '../../src/codec/bootstrap.ts';
import { CodecError } from '../../src/errors.ts';
import { encodeSyncML } from '../../src/codec/syncml.ts';

const account = {
  name: 'gw1',
  serverId: 'gw1-south',
  address: 'http://127.0.0.1:8081/dm',
  client: { type: 'DIGEST', name: 'bs-1', secret: 's3cret' },
  server: { type: 'DIGEST', name: 'gw1-south', secret: 'srv' },
};

describe('bootstrap messages', () => {
  const { body, contentType } = encodeBootstrap({ deviceId: 'IMEI:1', serverId: 'gw1-south', nodes: accountNodes(account), pin: '123456' });

  it('carries SEC and an HMAC-SHA1 MAC of the exact bytes, keyed by the PIN', () => {
    const p = bootstrapParams(contentType);
    expect(contentType.startsWith('application/vnd.syncml.dm+wbxml;')).toBe(true);
    expect(p.sec).toBe('USERPIN');
    expect(p.mac).toBe(createHmac('sha1', '123456').update(body).digest('hex').toUpperCase());
  });

  it('decodes back to the DMAcc nodes, in order', () => {
    const d = decodeBootstrap(body, contentType, '123456');
    expect(d.serverId).toBe('gw1-south');
    expect(d.nodes).toEqual(accountNodes(account));
  });

  it('is WBXML that libwbxml reads as a SyncML message of Adds', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gwmo-bs-'));
    writeFileSync(join(dir, 'b.wbxml'), body);
    execFileSync('wbxml2xml', ['-k', '-m', '0', '-o', join(dir, 'b.xml'), join(dir, 'b.wbxml')], { stdio: 'pipe' });
    const xml = readFileSync(join(dir, 'b.xml'), 'utf8');
    expect(xml.match(/<Add>/g)).toHaveLength(accountNodes(account).length);
    expect(xml).toContain('<LocURI>./DMAcc/gw1/AppAuth/CLCRED/AAuthName</LocURI>');
  });

  it('refuses a wrong PIN, a missing MAC and a tampered body (401)', () => {
    const err = (f: () => unknown): CodecError => {
      try {
        f();
      } catch (e) {
        return e as CodecError;
      }
      throw new Error('did not throw');
    };
    expect(err(() => decodeBootstrap(body, contentType, '654321')).status).toBe(401);
    expect(err(() => decodeBootstrap(body, 'application/vnd.syncml.dm+wbxml; SEC=USERPIN', '123456')).status).toBe(401);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 5]! ^= 0x01;
    expect(err(() => decodeBootstrap(tampered, contentType, '123456')).status).toBe(401);
  });

  it('refuses commands other than Add/Replace (400)', () => {
    const msg = encodeSyncML(
      { hdr: { verDTD: '1.2', verProto: 'DM/1.2', sessionID: '0', msgID: '1', target: { locURI: 'IMEI:1' }, source: { locURI: 'x' } }, body: [{ kind: 'Delete', cmdID: '1', items: [{ target: { locURI: './DMAcc' } }] }], final: true },
      'wbxml',
    );
    const ct = `application/vnd.syncml.dm+wbxml; SEC=USERPIN; MAC=${createHmac('sha1', '123456').update(msg).digest('hex')}`;
    try {
      decodeBootstrap(msg, ct, '123456');
      throw new Error('accepted');
    } catch (e) {
      expect((e as CodecError).status).toBe(400);
    }
  });
});
