// Interop: Clerk session tokens from Portcullis verified by Clerk's own Node SDK
// (`@clerk/backend`), as a Node API behind a Clerk frontend verifies them: `verifyToken` with
// the PEM (`jwtKey`, networkless) and with the secret key against Portcullis's Backend API
// JWKS, and `authenticateRequest` on a request carrying the token. Expired tokens, tokens for
// other parties and revoked sessions are refused as Clerk refuses them. The same SDK sets and
// removes a user's profile image (`users.updateUserProfileImage`, multipart).
//
// Run with PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL and PORTCULLIS_CLERK_SECRET_KEY set
// (scripts/test does; the server accepts that key).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { verifyToken, createClerkClient } from '@clerk/backend';

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL;
const ADMIN_URL = process.env.PORTCULLIS_ADMIN_URL;
const SECRET = process.env.PORTCULLIS_CLERK_SECRET_KEY;
if (!PUBLIC_URL || !ADMIN_URL || !SECRET) throw new Error('PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL and PORTCULLIS_CLERK_SECRET_KEY must be set');

async function json(res) {
  const body = await res.text();
  assert.ok(res.ok, `${res.status} ${body}`);
  return JSON.parse(body);
}

/** A native registration: the new session's Clerk id. */
async function signedIn() {
  const flow = await json(await fetch(`${PUBLIC_URL}/self-service/registration/api`));
  const done = await json(await fetch(`${PUBLIC_URL}/self-service/registration?flow=${flow.id}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ method: 'password', password: `Pw-${randomUUID()}`, traits: { email: `clerk-${randomUUID()}@example.com` } }),
  }));
  return { sid: `sess_${done.session.id.replaceAll('-', '')}`, userId: `user_${done.identity.id.replaceAll('-', '')}` };
}

/** A session token from the Backend API, as a backend asks for one. */
async function mint(sid, body = {}) {
  return fetch(`${ADMIN_URL}/v1/sessions/${sid}/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('Clerk session tokens verified by @clerk/backend', () => {
  it('verifies with the PEM and with the JWKS, and refuses expired, foreign-party and revoked ones', async () => {
    const { sid, userId } = await signedIn();
    const pem = await (await fetch(`${ADMIN_URL}/admin/clerk/jwt-key`)).text();
    const { jwt } = await json(await mint(sid));

    const claims = await verifyToken(jwt, { jwtKey: pem });
    assert.equal(claims.sub, userId);
    assert.equal(claims.sid, sid);
    // The keys from Portcullis's Backend API, found with the secret key.
    const viaJwks = await verifyToken(jwt, { secretKey: SECRET, apiUrl: ADMIN_URL });
    assert.equal(viaJwks.sid, sid);

    // A request carrying it, as a Node API sees it.
    const clerk = createClerkClient({ secretKey: SECRET, apiUrl: ADMIN_URL, jwtKey: pem, publishableKey: 'pk_live_MTI3LjAuMC4xOjQ0MzMk' });
    const state = await clerk.authenticateRequest(new Request('http://127.0.0.1/api', { headers: { authorization: `Bearer ${jwt}` } }));
    assert.equal(state.isSignedIn, true, state.reason);
    assert.equal(state.toAuth().userId, userId);

    // Only for the parties a backend names: this token names none.
    await assert.rejects(verifyToken(jwt, { jwtKey: pem, authorizedParties: ['http://127.0.0.1:4455'] }), /azp|authorized part/i);
    // Expired.
    const { jwt: short } = await json(await mint(sid, { expires_in_seconds: 1 }));
    await new Promise((r) => setTimeout(r, 2100));
    await assert.rejects(verifyToken(short, { jwtKey: pem, clockSkewInMs: 0 }), /expired/i);
    // A forged signature.
    const forged = jwt.slice(0, -4) + (jwt.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await assert.rejects(verifyToken(forged, { jwtKey: pem }));

    // Revoked: no new token.
    const revoked = await fetch(`${ADMIN_URL}/v1/sessions/${sid}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${SECRET}` } });
    assert.equal(revoked.status, 200);
    const again = await mint(sid);
    assert.equal(again.status, 404);
    assert.equal((await again.json()).errors[0].code, 'resource_not_found');
  });
});

describe('Profile images through @clerk/backend', () => {
  it('sets a user\'s picture (multipart, as the SDK sends it), serves it, and removes it', async () => {
    const { userId } = await signedIn();
    const clerk = createClerkClient({ secretKey: SECRET, apiUrl: ADMIN_URL });
    // A 3 × 2 PNG.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAEElEQVR4nGM4oaEBQQxwFgBFdAaR8TH9JAAAAABJRU5ErkJggg==', 'base64');
    const user = await clerk.users.updateUserProfileImage(userId, { file: new Blob([png], { type: 'image/png' }) });
    assert.equal(user.id, userId);
    assert.equal(user.hasImage, true);
    assert.ok(user.imageUrl.startsWith(`${PUBLIC_URL}/clerk/images/img_`), user.imageUrl);
    const served = await fetch(user.imageUrl);
    assert.equal(served.status, 200);
    // Encoded again: no transparency, so a JPEG.
    assert.equal(served.headers.get('content-type'), 'image/jpeg');
    const bytes = Buffer.from(await served.arrayBuffer());
    assert.deepEqual([...bytes.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    assert.equal((await clerk.users.getUser(userId)).imageUrl, user.imageUrl);

    // Not an image: Clerk's error.
    await assert.rejects(
      clerk.users.updateUserProfileImage(userId, { file: new Blob(['<svg xmlns="http://www.w3.org/2000/svg"/>'], { type: 'image/svg+xml' }) }),
      (e) => e.status === 400 && e.errors?.[0]?.code === 'form_param_format_invalid',
    );

    const removed = await clerk.users.deleteUserProfileImage(userId);
    assert.equal(removed.hasImage, false);
    assert.equal((await fetch(user.imageUrl)).status, 404);
  });
});
