// Interop: the browser flows as a server-rendered Kratos UI (kratos-selfservice-ui-node and
// the like) drives them with the official @ory/kratos-client: it forwards the browser's
// cookies in the SDK's `cookie` parameter and passes the Set-Cookie answers back. The SDK's
// axios sends `Accept: application/json, text/plain, */*`, which must count as JSON.
//
// Run with PORTCULLIS_PUBLIC_URL set (scripts/test does).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Configuration, FrontendApi } from '@ory/kratos-client';

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL;
if (!PUBLIC_URL) throw new Error('PORTCULLIS_PUBLIC_URL must be set');

const frontend = new FrontendApi(
  new Configuration({ basePath: PUBLIC_URL, baseOptions: { timeout: 15_000, proxy: false } }),
);

/** The cookies of one browser, as an SSR frontend keeps forwarding them. */
class Jar {
  constructor() {
    this.cookies = new Map();
  }
  absorb(res) {
    for (const c of res.headers['set-cookie'] ?? []) {
      const [pair, ...attrs] = c.split(';');
      const [name, value] = pair.split('=');
      if (attrs.some((a) => a.trim() === 'Max-Age=0')) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }
  get header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

const csrf = (flow) => flow.ui.nodes.find((n) => n.attributes.name === 'csrf_token').attributes.value;

async function rejected(promise) {
  try {
    await promise;
  } catch (e) {
    if (e.response) return e.response;
    throw e;
  }
  assert.fail('the call succeeded');
}

describe('browser flows through @ory/kratos-client with forwarded cookies', () => {
  const email = `browser-${randomUUID()}@example.com`;
  const password = `Pc!${randomBytes(15).toString('base64url')}9x`;
  const jar = new Jar();

  it('registration: JSON flow with a CSRF node, then a session cookie and continue_with', async () => {
    const init = jar.absorb(await frontend.createBrowserRegistrationFlow());
    assert.equal(init.status, 200, 'axios Accept headers get JSON, not a redirect');
    assert.equal(init.data.type, 'browser');
    assert.equal(init.data.ui.nodes[0].attributes.name, 'csrf_token');
    assert.ok([...jar.cookies.keys()].some((k) => k.startsWith('csrf_token_')));
    const res = jar.absorb(
      await frontend.updateRegistrationFlow({
        flow: init.data.id,
        cookie: jar.header,
        updateRegistrationFlowBody: {
          method: 'password',
          csrf_token: csrf(init.data),
          password,
          traits: { email, name: { first: 'Ada', last: 'Lovelace' } },
        },
      }),
    );
    assert.equal(res.status, 200);
    assert.equal(res.data.identity.traits.email, email);
    assert.equal(res.data.session_token, undefined);
    assert.equal(res.data.continue_with[0].action, 'redirect_browser_to');
    assert.ok(jar.cookies.has('ory_kratos_session'));
    const me = await frontend.toSession({ cookie: jar.header });
    assert.equal(me.data.identity.traits.email, email);
  });

  it('settings: the profile is saved through the cookie session', async () => {
    const init = jar.absorb(await frontend.createBrowserSettingsFlow({ cookie: jar.header }));
    const res = await frontend.updateSettingsFlow({
      flow: init.data.id,
      cookie: jar.header,
      updateSettingsFlowBody: {
        method: 'profile',
        csrf_token: csrf(init.data),
        traits: { email, name: { first: 'Grace', last: 'Hopper' } },
      },
    });
    assert.equal(res.status, 200);
    assert.equal(res.data.state, 'success');
    assert.equal(res.data.identity.traits.name.first, 'Grace');
  });

  it('logout: a logout flow, then 204 and the session is over', async () => {
    const flow = await frontend.createBrowserLogoutFlow({ cookie: jar.header });
    assert.match(flow.data.logout_url, /\/self-service\/logout\?token=/);
    const res = jar.absorb(
      await frontend.updateLogoutFlow({ token: flow.data.logout_token, cookie: jar.header }),
    );
    assert.equal(res.status, 204);
    assert.ok(!jar.cookies.has('ory_kratos_session'));
    const r = await rejected(frontend.toSession({ cookie: jar.header }));
    assert.equal(r.status, 401);
  });

  it('login: 400 with the flow for a wrong password, then a session', async () => {
    const init = jar.absorb(await frontend.createBrowserLoginFlow({ cookie: jar.header }));
    const body = (pw) => ({
      flow: init.data.id,
      cookie: jar.header,
      updateLoginFlowBody: { method: 'password', csrf_token: csrf(init.data), identifier: email, password: pw },
    });
    const bad = await rejected(frontend.updateLoginFlow(body('not the password')));
    assert.equal(bad.status, 400);
    assert.equal(bad.data.id, init.data.id);
    assert.deepEqual(bad.data.ui.messages.map((m) => m.id), [4000006]);
    const ok = jar.absorb(await frontend.updateLoginFlow(body(password)));
    assert.equal(ok.status, 200);
    assert.equal(ok.data.session.identity.traits.email, email);
    assert.ok(jar.cookies.has('ory_kratos_session'));
  });

  it('CSRF: a flow read or submitted without its cookie is refused', async () => {
    const other = new Jar();
    const init = other.absorb(await frontend.createBrowserLoginFlow());
    const read = await rejected(frontend.getLoginFlow({ id: init.data.id }));
    assert.equal(read.status, 403);
    assert.equal(read.data.error.id, 'security_csrf_violation');
    const submit = await rejected(
      frontend.updateLoginFlow({
        flow: init.data.id,
        updateLoginFlowBody: { method: 'password', csrf_token: csrf(init.data), identifier: email, password },
      }),
    );
    assert.equal(submit.status, 403);
    assert.equal(submit.data.error.id, 'security_csrf_violation');
    const ok = await frontend.getLoginFlow({ id: init.data.id, cookie: other.header });
    assert.equal(ok.data.id, init.data.id);
  });

  it('errors: the stubs answer through getFlowError', async () => {
    const res = await frontend.getFlowError({ id: 'stub:500' });
    assert.equal(res.data.error.code, 500);
  });
});
