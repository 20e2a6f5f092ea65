// Interop suite: the simplejwt-compatible access tokens of a running Portcullis
// server (default ES256 signing key) verified with `jose` (pinned in
// package.json) through the published JWKS, as a Node API backend would.
//
// Run with PORTCULLIS_PUBLIC_URL and PORTCULLIS_ADMIN_URL set, see README.md.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, createHmac } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL?.replace(/\/+$/, '');
const ADMIN_URL = process.env.PORTCULLIS_ADMIN_URL?.replace(/\/+$/, '');
if (!PUBLIC_URL || !ADMIN_URL) {
  throw new Error(
    'PORTCULLIS_PUBLIC_URL and PORTCULLIS_ADMIN_URL must be set ' +
      '(e.g. http://127.0.0.1:4433 and http://127.0.0.1:4434); ' +
      `got PORTCULLIS_PUBLIC_URL=${PUBLIC_URL ?? '<unset>'} PORTCULLIS_ADMIN_URL=${ADMIN_URL ?? '<unset>'}`,
  );
}

// The default issuer is the public base URL without its trailing slash.
const ISSUER = PUBLIC_URL;
const JWKS = createRemoteJWKSet(new URL(`${PUBLIC_URL}/.well-known/jwks.json`));
const PASSWORD = 'tangerine violin sleepy';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function postJson(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const decodePart = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

describe('jose verifies Portcullis access tokens through the JWKS', () => {
  let identityId;
  let pair;

  before(async () => {
    const email = `jose-${randomUUID()}@example.com`;
    const created = await postJson(`${ADMIN_URL}/admin/identities`, {
      schema_id: 'default',
      traits: { email, name: { first: 'Jose', last: 'Interop' } },
      credentials: { password: { config: { password: PASSWORD } } },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    identityId = created.body.id;
    const obtained = await postJson(`${PUBLIC_URL}/api/token/`, { email, password: PASSWORD });
    assert.equal(obtained.status, 200, JSON.stringify(obtained.body));
    pair = obtained.body;
  });

  it('accepts the access token with the ES256 key named by its kid', async () => {
    const { payload, protectedHeader } = await jwtVerify(pair.access, JWKS, {
      issuer: ISSUER,
      algorithms: ['ES256'],
      typ: 'at+jwt',
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.match(protectedHeader.kid, /^es256-/);
    assert.equal(payload.token_type, 'access');
    assert.equal(payload.user_id, identityId);
    assert.equal(payload.sub, identityId);
    assert.match(payload.jti, /^[0-9a-f]{32}$/);
    assert.match(payload.sid, UUID_RE);
    assert.equal(typeof payload.exp, 'number');
    assert.equal(payload.exp - payload.iat, 300);
  });

  it('tells a refresh token from an access token by its JOSE type', async () => {
    // A verifier that checks the type (as RFC 9068 asks) never takes a refresh token for access.
    await assert.rejects(
      jwtVerify(pair.refresh, JWKS, { issuer: ISSUER, algorithms: ['ES256'], typ: 'at+jwt' }),
      errors.JWTClaimValidationFailed,
    );
    const { protectedHeader } = await jwtVerify(pair.refresh, JWKS, { issuer: ISSUER, algorithms: ['ES256'] });
    assert.equal(protectedHeader.typ, 'refresh+jwt');
  });

  it('publishes the signing key with kid, alg and use, and no private part', async () => {
    const res = await fetch(`${PUBLIC_URL}/.well-known/jwks.json`, { signal: AbortSignal.timeout(15_000) });
    assert.equal(res.status, 200);
    const { keys } = await res.json();
    const kid = decodeProtectedHeader(pair.access).kid;
    const key = keys.find((k) => k.kid === kid);
    assert.ok(key, `kid ${kid} not in ${JSON.stringify(keys)}`);
    assert.deepEqual([key.kty, key.crv, key.alg, key.use], ['EC', 'P-256', 'ES256', 'sig']);
    for (const k of keys) assert.equal(k.d, undefined, 'private key material in the JWKS');
  });

  it('refuses a tampered token, and so does /api/token/verify/', async () => {
    const [h, p, s] = pair.access.split('.');
    const claims = decodePart(p);
    const forged = `${h}.${b64url(JSON.stringify({ ...claims, user_id: randomUUID() }))}.${s}`;
    await assert.rejects(
      jwtVerify(forged, JWKS, { issuer: ISSUER, algorithms: ['ES256'] }),
      errors.JWSSignatureVerificationFailed,
    );
    const verified = await postJson(`${PUBLIC_URL}/api/token/verify/`, { token: forged });
    assert.equal(verified.status, 401);
    assert.equal(verified.body.code, 'token_not_valid');
  });

  it('refuses alg confusion and a wrong issuer', async () => {
    const [h, p] = pair.access.split('.');
    const { kid } = decodePart(h);
    const jwks = await (await fetch(`${PUBLIC_URL}/.well-known/jwks.json`)).json();
    const jwk = jwks.keys.find((k) => k.kid === kid);
    const hsHeader = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }));
    const sig = createHmac('sha256', JSON.stringify(jwk)).update(`${hsHeader}.${p}`).digest();
    await assert.rejects(
      jwtVerify(`${hsHeader}.${p}.${b64url(sig)}`, JWKS, { issuer: ISSUER, algorithms: ['ES256'] }),
      errors.JOSEAlgNotAllowed,
    );
    const noneHeader = b64url(JSON.stringify({ alg: 'none', typ: 'JWT', kid }));
    await assert.rejects(
      jwtVerify(`${noneHeader}.${p}.`, JWKS, { issuer: ISSUER, algorithms: ['ES256'] }),
      errors.JOSEAlgNotAllowed,
    );
    await assert.rejects(
      jwtVerify(pair.access, JWKS, { issuer: 'https://evil.example', algorithms: ['ES256'] }),
      errors.JWTClaimValidationFailed,
    );
  });
});
