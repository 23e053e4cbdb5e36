import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DmStatusError } from '../../src/errors.ts';
import {
  ROOT_DEFAULT_ACL,
  aclAllows,
  creatorAcl,
  formatAcl,
  isValidAcl,
  parseAcl,
  removeServerFromAcl,
  validateAcl,
} from '../../src/tree/acl.ts';

describe('ACL grammar (§5.4)', () => {
  it('parses the spec example into ordered entries', () => {
    expect(parseAcl('Add=srvA&Delete=srvA&Replace=srvA+srvB&Get=*')).toEqual([
      { cmd: 'Add', servers: ['srvA'] },
      { cmd: 'Delete', servers: ['srvA'] },
      { cmd: 'Replace', servers: ['srvA', 'srvB'] },
      { cmd: 'Get', servers: ['*'] },
    ]);
  });

  it('accepts the empty ACL and every command name including Exec', () => {
    expect(parseAcl('')).toEqual([]);
    expect(isValidAcl('Exec=srv.example:1&Get=a')).toBe(true);
    expect(isValidAcl(ROOT_DEFAULT_ACL)).toBe(true);
  });

  it.each([
    ['Get=', 'a command without a server'],
    ['Get', 'an entry without "="'],
    ['Copy=srvA', 'Copy (there is no Copy entry)'],
    ['get=srvA', 'a lower-case command'],
    ['Get=srvA&', 'a trailing "&"'],
    ['&Get=srvA', 'a leading "&"'],
    ['Get=srvA++srvB', 'an empty server between "+"'],
    ['Get=srv A', 'a space in a server id'],
    ['Get=srv*', 'a "*" inside a server id'],
    ['Get=a=b', 'a "=" inside a server id'],
    ['Get=a\tb', 'a control character'],
  ])('rejects %j (%s) with 400 TREE_ACL_SYNTAX', (acl) => {
    expect(isValidAcl(acl)).toBe(false);
    let err: unknown;
    try {
      validateAcl(acl);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DmStatusError);
    expect((err as DmStatusError).status).toBe(400);
    expect((err as DmStatusError).code).toBe('TREE_ACL_SYNTAX');
  });

  it('formats entries back to the same text and drops entries without servers', () => {
    const acl = 'Get=*&Replace=srvA+srvB';
    expect(formatAcl(parseAcl(acl))).toBe(acl);
    expect(formatAcl([{ cmd: 'Get', servers: [] }, { cmd: 'Add', servers: ['x'] }])).toBe('Add=x');
  });

  it('round-trips any valid ACL through parse and format', () => {
    const id = fc.stringMatching(/^[A-Za-z0-9._:\-/]{1,8}$/);
    const entry = fc.record({
      cmd: fc.constantFrom('Add' as const, 'Delete' as const, 'Exec' as const, 'Get' as const, 'Replace' as const),
      servers: fc.array(fc.oneof(id, fc.constant('*')), { minLength: 1, maxLength: 3 }),
    });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 5 }), (entries) => {
        const text = formatAcl(entries);
        expect(isValidAcl(text)).toBe(true);
        expect(parseAcl(text)).toEqual(entries);
      }),
    );
  });
});

describe('aclAllows (§5.4 checking)', () => {
  const acl = 'Add=srvA&Get=*&Replace=srvA+srvB';
  it('grants named servers and "*" and nothing else', () => {
    expect(aclAllows(acl, 'Replace', 'srvB')).toBe(true);
    expect(aclAllows(acl, 'Replace', 'srvC')).toBe(false);
    expect(aclAllows(acl, 'Get', 'anyone')).toBe(true);
    expect(aclAllows(acl, 'Add', 'srvB')).toBe(false);
    expect(aclAllows(acl, 'Delete', 'srvA')).toBe(false);
  });
  it('matches whole ids only, never prefixes', () => {
    expect(aclAllows('Get=srvAB', 'Get', 'srvA')).toBe(false);
    expect(aclAllows('Get=srvA', 'Get', 'srvAB')).toBe(false);
  });
  it('consults every entry for a repeated command', () => {
    expect(aclAllows('Get=a&Get=b', 'Get', 'b')).toBe(true);
  });
  it('allows nothing on an empty (already resolved) ACL', () => {
    expect(aclAllows('', 'Get', 'srvA')).toBe(false);
  });
});

describe('removing a server identity (§5.4)', () => {
  it('drops the id and the commands left without servers', () => {
    expect(removeServerFromAcl('Add=srvA&Get=srvA+srvB&Replace=*+srvA', 'srvA')).toBe('Get=srvB&Replace=*');
  });
  it('leaves an empty ACL (inherited) when nothing remains', () => {
    expect(removeServerFromAcl('Get=srvA&Delete=srvA', 'srvA')).toBe('');
  });
  it('turns root commands left without servers into "*"', () => {
    expect(removeServerFromAcl('Add=srvA&Get=srvA+srvB', 'srvA', { root: true })).toBe('Add=*&Get=srvB');
  });
});

describe('creator ACL (§5.4 new nodes)', () => {
  it('is the reference client string giving the creator Add, Delete and Replace', () => {
    const acl = creatorAcl('srvB');
    expect(acl).toBe('Get=*&Add=srvB&Delete=srvB&Replace=srvB');
    for (const cmd of ['Add', 'Delete', 'Replace', 'Get'] as const) expect(aclAllows(acl, cmd, 'srvB')).toBe(true);
    expect(aclAllows(acl, 'Replace', 'srvA')).toBe(false);
  });
});
