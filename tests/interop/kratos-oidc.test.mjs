// Interop: social sign-in against a real OpenID provider (oidc-provider, run by scripts/test
// beside the server, see idp/oidc-provider.mjs). A browser is played by fetch with one cookie
// jar per site, following redirects by hand so every hop is checked; the SPA steps go through
// the official @ory/kratos-client.
//
// Run with PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL and PORTCULLIS_IDP_URL set (scripts/test does).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Configuration, FrontendApi } from '@ory/kratos-client';

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL;
const ADMIN_URL = process.env.PORTCULLIS_ADMIN_URL;
const IDP_URL = process.env.PORTCULLIS_IDP_URL;
if (!PUBLIC_URL || !ADMIN_URL || !IDP_URL) throw new Error('PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL and PORTCULLIS_IDP_URL must be set');
const PROVIDER = 'local';
const CALLBACK = `${PUBLIC_URL}/self-service/methods/oidc/callback/${PROVIDER}`;

/** One browser: a cookie jar per origin, redirects followed by hand. */
class Browser {
  constructor() {
    this.jars = new Map();
  }
  jar(url) {
    const origin = new URL(url).origin;
    if (!this.jars.has(origin)) this.jars.set(origin, new Map());
    return this.jars.get(origin);
  }
  async fetch(url, init = {}) {
    const jar = this.jar(url);
    const headers = { ...(init.headers ?? {}) };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const [name, value] = [pair.slice(0, i), pair.slice(i + 1)];
      if (attrs.some((a) => /max-age=0/i.test(a.trim())) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    return res;
  }
  /** Follows redirects from `url` until one leaves for `stop` (a URL prefix); returns that URL. */
  async followUntil(url, stop) {
    for (let hops = 0; hops < 15; hops++) {
      if (url.startsWith(stop)) return url;
      const res = await this.fetch(url);
      const to = res.headers.get('location');
      assert.ok(to, `${url} answered ${res.status} without a redirect: ${await res.text()}`);
      url = new URL(to, url).toString();
    }
    assert.fail('too many redirects');
  }
  cookie(url, name) {
    return [...this.jar(url)].find(([k]) => k === name)?.[1];
  }
}

const form = (fields) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});
const csrfOf = (flow) => flow.ui.nodes.find((n) => n.attributes.name === 'csrf_token').attributes.value;

async function nextAccount(account) {
  const res = await fetch(`${IDP_URL}/test/next`, { method: 'POST', body: JSON.stringify(account) });
  assert.equal(res.status, 204);
}

/** A browser flow of `kind`, as JSON (the CSRF cookie lands in the jar). */
async function browserFlow(b, kind) {
  const res = await b.fetch(`${PUBLIC_URL}/self-service/${kind}/browser`, { headers: { accept: 'application/json' } });
  assert.equal(res.status, 200);
  return res.json();
}

/** Clicks the provider's button on a flow's HTML form: 303 to the provider. */
async function clickProvider(b, kind, flow, extra = {}) {
  const res = await b.fetch(`${PUBLIC_URL}/self-service/${kind}?flow=${flow.id}`, form({ csrf_token: csrfOf(flow), provider: PROVIDER, ...extra }));
  assert.equal(res.status, 303, await res.text());
  return res.headers.get('location');
}

/** The provider's round trip: from its authorization URL back to our callback (not yet followed). */
async function atProvider(b, authUrl) {
  return b.followUntil(authUrl, CALLBACK);
}

async function whoami(b) {
  const res = await b.fetch(`${PUBLIC_URL}/sessions/whoami`, { headers: { accept: 'application/json' } });
  return { status: res.status, body: await res.json() };
}

async function adminIdentity(id) {
  const res = await fetch(`${ADMIN_URL}/admin/identities/${id}?include_credential=oidc`);
  return res.json();
}

const frontend = new FrontendApi(new Configuration({ basePath: PUBLIC_URL, baseOptions: { proxy: false } }));

describe('social sign-in with a real OpenID provider', () => {
  const sub = `user-${randomUUID()}`;
  const email = `social-${randomUUID()}@example.com`;
  const account = { sub, claims: { email, email_verified: true, given_name: 'Grace', family_name: 'Hopper' } };
  let identityId;

  it('the registration form offers the provider as Kratos does (group oidc, 1040002)', async () => {
    const flow = await browserFlow(new Browser(), 'registration');
    const button = flow.ui.nodes.find((n) => n.group === 'oidc');
    assert.equal(button.attributes.name, 'provider');
    assert.equal(button.attributes.value, PROVIDER);
    assert.equal(button.attributes.type, 'submit');
    assert.equal(button.meta.label.id, 1040002);
    assert.deepEqual(button.meta.label.context, { provider: 'Local IdP', provider_id: PROVIDER });
  });

  it('browser sign-up: 303 to the provider with state, nonce and PKCE, back with a session', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'registration');
    const auth = new URL(await clickProvider(b, 'registration', flow));
    assert.equal(auth.origin + auth.pathname, `${IDP_URL}/auth`);
    const q = auth.searchParams;
    assert.equal(q.get('client_id'), 'portcullis');
    assert.equal(q.get('redirect_uri'), CALLBACK);
    assert.equal(q.get('response_type'), 'code');
    assert.deepEqual(q.get('scope').split(' ').sort(), ['email', 'openid', 'profile']);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.ok(q.get('code_challenge').length >= 43);
    assert.ok(q.get('state').length > 40 && !q.get('state').includes(flow.id), 'the state is sealed');
    assert.ok(q.get('nonce'));

    await nextAccount(account);
    const back = await atProvider(b, auth.toString());
    const res = await b.fetch(back);
    assert.equal(res.status, 303);
    assert.ok(b.cookie(PUBLIC_URL, 'ory_kratos_session'), 'signed in');
    const me = await whoami(b);
    assert.equal(me.status, 200);
    assert.equal(me.body.identity.traits.email, email);
    assert.deepEqual(me.body.identity.traits.name, { first: 'Grace', last: 'Hopper' });
    assert.equal(me.body.authentication_methods[0].method, 'oidc');
    // The provider vouched for the address.
    const address = me.body.identity.verifiable_addresses[0];
    assert.equal(address.value, email);
    assert.equal(address.verified, true);
    assert.equal(address.status, 'completed');
    identityId = me.body.identity.id;

    const admin = await adminIdentity(identityId);
    assert.deepEqual(admin.credentials.oidc.identifiers, [`${PROVIDER}:${sub}`]);
    const linked = admin.credentials.oidc.config.providers[0];
    assert.equal(linked.subject, sub);
    assert.equal(linked.provider, PROVIDER);

    // The callback URL is good once.
    const again = await new Browser().fetch(back);
    assert.equal(again.status, 303);
    assert.match(again.headers.get('location'), /\/ui\/error\?id=|\/self-service\/errors/);
  });

  it('browser sign-in: the same provider account signs in to the same identity', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'login');
    const button = flow.ui.nodes.find((n) => n.group === 'oidc');
    assert.equal(button.meta.label.id, 1010002);
    await nextAccount(account);
    const back = await atProvider(b, await clickProvider(b, 'login', flow));
    const res = await b.fetch(back);
    assert.equal(res.status, 303);
    const me = await whoami(b);
    assert.equal(me.body.identity.id, identityId);
    assert.equal(me.body.authentication_methods.at(-1).method, 'oidc');
  });

  it('SPA: a JSON submit gets 422 browser_location_change_required (via @ory/kratos-client)', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'login');
    const jar = b.jar(PUBLIC_URL);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const err = await frontend
      .updateLoginFlow({ flow: flow.id, cookie, updateLoginFlowBody: { method: 'oidc', provider: PROVIDER, csrf_token: csrfOf(flow) } })
      .then(() => assert.fail('expected 422'), (e) => e.response);
    assert.equal(err.status, 422);
    assert.equal(err.data.error.id, 'browser_location_change_required');
    const to = new URL(err.data.redirect_browser_to);
    assert.equal(to.origin + to.pathname, `${IDP_URL}/auth`);
    // The SPA's browser follows it and comes back signed in.
    await nextAccount(account);
    const res = await b.fetch(await atProvider(b, to.toString()));
    assert.equal(res.status, 303);
    assert.equal((await whoami(b)).body.identity.id, identityId);
  });

  it('a callback from another browser (no anti-CSRF cookie of the flow) signs nobody in', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'login');
    await nextAccount(account);
    const back = await atProvider(b, await clickProvider(b, 'login', flow));
    const stranger = new Browser();
    const res = await stranger.fetch(back);
    assert.equal(res.status, 303);
    assert.equal(stranger.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined);
    assert.equal((await whoami(stranger)).status, 401);
  });

  it('a forged or foreign state, a wrong provider in the path and a missing state end on the error page', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'login');
    const auth = new URL(await clickProvider(b, 'login', flow));
    const state = auth.searchParams.get('state');
    const forged = state.slice(0, -4) + (state.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    for (const url of [
      `${CALLBACK}?code=x&state=${encodeURIComponent(forged)}`,
      `${CALLBACK}?code=x`,
      `${PUBLIC_URL}/self-service/methods/oidc/callback/other?code=x&state=${encodeURIComponent(state)}`,
    ]) {
      const res = await b.fetch(url);
      assert.equal(res.status, 303, url);
      const to = new URL(res.headers.get('location'), PUBLIC_URL);
      const id = to.searchParams.get('id');
      assert.ok(id, `${url} -> ${to}`);
      const stored = await (await fetch(`${PUBLIC_URL}/self-service/errors?id=${id}`)).json();
      assert.match(stored.error.reason, /state|provider mismatch/, JSON.stringify(stored));
      assert.equal(b.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined);
    }
  });

  it('the provider refusing (access_denied) shows the flow again with the reason', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'login');
    await nextAccount({ abort: true });
    const back = new URL(await atProvider(b, await clickProvider(b, 'login', flow)));
    assert.equal(back.searchParams.get('error'), 'access_denied');
    const res = await b.fetch(back.toString());
    assert.equal(res.status, 303);
    const to = new URL(res.headers.get('location'), PUBLIC_URL);
    assert.equal(to.searchParams.get('flow'), flow.id);
    const shown = await (await b.fetch(`${PUBLIC_URL}/self-service/login/flows?id=${flow.id}`, { headers: { accept: 'application/json' } })).json();
    assert.match(shown.ui.messages[0].text, /access_denied/);
    assert.equal(b.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined);
  });

  it('registration completion: a provider account without an e-mail is asked for it, then registered', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'registration');
    const lone = { sub: `lone-${randomUUID()}`, claims: { given_name: 'Ada' } };
    await nextAccount(lone);
    const res = await b.fetch(await atProvider(b, await clickProvider(b, 'registration', flow)));
    assert.equal(res.status, 303);
    const to = new URL(res.headers.get('location'), PUBLIC_URL);
    const shownId = to.searchParams.get('flow');
    assert.ok(shownId);
    assert.equal(b.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined, 'not signed in yet');
    const shown = await (await b.fetch(`${PUBLIC_URL}/self-service/registration/flows?id=${shownId}`, { headers: { accept: 'application/json' } })).json();
    const emailNode = shown.ui.nodes.find((n) => n.attributes.name === 'traits.email');
    // Kratos's current node group for these (feature_flags.legacy_oidc_registration_node_group: false).
    assert.equal(emailNode.group, 'default');
    assert.equal(emailNode.messages[0].id, 4000002);
    assert.equal(shown.ui.nodes.find((n) => n.attributes.name === 'traits.name.first').attributes.value, 'Ada');
    const cont = shown.ui.nodes.find((n) => n.attributes.name === 'provider');
    assert.equal(cont.meta.label.id, 1040003);
    assert.equal(cont.attributes.value, PROVIDER);
    assert.equal(shown.active, 'oidc');

    // The user fills it in and continues: through the provider again, then registered.
    const given = `lone-${randomUUID()}@example.com`;
    const again = await clickProvider(b, 'registration', shown, { 'traits.email': given, 'traits.name.first': 'Ada' });
    await nextAccount(lone);
    const done = await b.fetch(await atProvider(b, again));
    assert.equal(done.status, 303);
    const me = await whoami(b);
    assert.equal(me.status, 200);
    assert.equal(me.body.identity.traits.email, given);
    // An address the user typed is not one the provider vouched for.
    assert.equal(me.body.identity.verifiable_addresses[0].verified, false);
  });

  it('an address another account has is linked only after signing in to that account (1010016)', async () => {
    // A password account first, then a provider account naming the same (verified) address.
    const taken = `taken-${randomUUID()}@example.com`;
    const password = `Pw-${randomUUID()}`;
    const reg = await (await fetch(`${PUBLIC_URL}/self-service/registration/api`)).json();
    const made = await fetch(`${PUBLIC_URL}/self-service/registration?flow=${reg.id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'password', password, traits: { email: taken } }),
    });
    assert.equal(made.status, 200);
    const owner = (await made.json()).identity.id;
    const b = new Browser();
    const flow = await browserFlow(b, 'registration');
    const dup = { sub: `dup-${randomUUID()}`, claims: { email: taken, email_verified: true } };
    await nextAccount(dup);
    const res = await b.fetch(await atProvider(b, await clickProvider(b, 'registration', flow)));
    assert.equal(res.status, 303);
    assert.equal(b.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined, 'not signed in by the address');
    const to = new URL(res.headers.get('location'), PUBLIC_URL);
    assert.match(to.pathname, /login/);
    const linkFlow = await (await b.fetch(`${PUBLIC_URL}/self-service/login/flows?id=${to.searchParams.get('flow')}`, { headers: { accept: 'application/json' } })).json();
    const message = linkFlow.ui.messages[0];
    assert.equal(message.id, 1010016);
    assert.equal(message.context.duplicate_identifier, taken);
    assert.equal(message.context.provider, 'Local IdP');
    const identifier = linkFlow.ui.nodes.find((n) => n.attributes.name === 'identifier');
    assert.equal(identifier.attributes.type, 'hidden');
    assert.equal(identifier.attributes.value, taken);
    assert.ok(!linkFlow.ui.nodes.some((n) => n.attributes.value === PROVIDER), 'the provider just used does not confirm itself');
    assert.equal((await adminIdentity(owner)).credentials.oidc, undefined, 'nothing linked yet');

    // The owner signs in with the password: the provider account joins the account.
    const signed = await b.fetch(`${PUBLIC_URL}/self-service/login?flow=${linkFlow.id}`, form({ csrf_token: csrfOf(linkFlow), method: 'password', identifier: taken, password }));
    assert.equal(signed.status, 303, await signed.text());
    assert.equal((await whoami(b)).body.identity.id, owner);
    assert.deepEqual((await adminIdentity(owner)).credentials.oidc.identifiers, [`${PROVIDER}:${dup.sub}`]);
    // From now on the provider signs that account in.
    const again = new Browser();
    const login = await browserFlow(again, 'login');
    await nextAccount(dup);
    await again.fetch(await atProvider(again, await clickProvider(again, 'login', login)));
    assert.equal((await whoami(again)).body.identity.id, owner);
    const owners = await (await fetch(`${ADMIN_URL}/admin/identities?credentials_identifier=${encodeURIComponent(taken)}`)).json();
    assert.equal(owners.length, 1);
  });

  it('a native app signs up in the system browser and trades its exchange code once, then signs in', async () => {
    const appReturn = `${PUBLIC_URL}/app-callback`;
    const nativeAccount = { sub: `native-${randomUUID()}`, claims: { email: `native-${randomUUID()}@example.com`, email_verified: true } };
    const viaApp = async (kind) => {
      const q = new URLSearchParams({ return_session_token_exchange_code: 'true', return_to: appReturn });
      const flow = await (await fetch(`${PUBLIC_URL}/self-service/${kind}/api?${q}`)).json();
      assert.ok(flow.session_token_exchange_code, JSON.stringify(flow));
      const submit = await fetch(`${PUBLIC_URL}/self-service/${kind}?flow=${flow.id}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ method: 'oidc', provider: PROVIDER }),
      });
      assert.equal(submit.status, 422);
      const { redirect_browser_to } = await submit.json();
      // The system browser has none of the app's cookies.
      const system = new Browser();
      await nextAccount(nativeAccount);
      const res = await system.fetch(await atProvider(system, redirect_browser_to));
      assert.equal(res.status, 303);
      const landed = new URL(res.headers.get('location'));
      assert.equal(landed.origin + landed.pathname, appReturn);
      const code = landed.searchParams.get('code');
      assert.ok(code);
      assert.equal(system.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined, 'the system browser is not signed in');
      const trade = new URLSearchParams({ init_code: flow.session_token_exchange_code, return_to_code: code });
      const got = await fetch(`${PUBLIC_URL}/sessions/token-exchange?${trade}`);
      assert.equal(got.status, 200);
      const { session_token } = await got.json();
      const again = await fetch(`${PUBLIC_URL}/sessions/token-exchange?${trade}`);
      assert.equal(again.status, 404, 'once');
      const me = await (await fetch(`${PUBLIC_URL}/sessions/whoami`, { headers: { 'x-session-token': session_token } })).json();
      assert.equal(me.identity.traits.email, nativeAccount.claims.email);
      return me.identity.id;
    };
    const signedUp = await viaApp('registration');
    assert.equal(await viaApp('login'), signedUp);
  });

  it('settings link a provider to a password account and unlink it, but never the last way in', async () => {
    const b = new Browser();
    // A password account, signed in in this browser.
    const owner = `linker-${randomUUID()}@example.com`;
    const password = `Pw-${randomUUID()}`;
    const reg = await browserFlow(b, 'registration');
    const made = await b.fetch(`${PUBLIC_URL}/self-service/registration?flow=${reg.id}`, form({ csrf_token: csrfOf(reg), method: 'password', password, 'traits.email': owner }));
    assert.equal(made.status, 303, await made.text());
    const settingsFlow = async () => (await b.fetch(`${PUBLIC_URL}/self-service/settings/browser`, { headers: { accept: 'application/json' } })).json();
    let flow = await settingsFlow();
    const link = flow.ui.nodes.find((n) => n.attributes.name === 'link');
    assert.equal(link.attributes.value, PROVIDER);
    assert.equal(link.meta.label.id, 1050002);
    const linked = { sub: `linked-${randomUUID()}`, claims: { email: `elsewhere-${randomUUID()}@example.com`, email_verified: true } };
    const res = await b.fetch(`${PUBLIC_URL}/self-service/settings?flow=${flow.id}`, form({ csrf_token: csrfOf(flow), link: PROVIDER }));
    assert.equal(res.status, 303);
    await nextAccount(linked);
    const back = await b.fetch(await atProvider(b, res.headers.get('location')));
    assert.equal(back.status, 303);
    const me = await whoami(b);
    assert.deepEqual((await adminIdentity(me.body.identity.id)).credentials.oidc.identifiers, [`${PROVIDER}:${linked.sub}`]);
    // The provider now signs that account in.
    const other = new Browser();
    const login = await browserFlow(other, 'login');
    await nextAccount(linked);
    await other.fetch(await atProvider(other, await clickProvider(other, 'login', login)));
    assert.equal((await whoami(other)).body.identity.id, me.body.identity.id);
    // Unlinking it leaves the password.
    flow = await settingsFlow();
    const unlink = flow.ui.nodes.find((n) => n.attributes.name === 'unlink');
    assert.equal(unlink.attributes.value, PROVIDER);
    const done = await b.fetch(`${PUBLIC_URL}/self-service/settings?flow=${flow.id}`, { ...form({ csrf_token: csrfOf(flow), unlink: PROVIDER }), headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } });
    assert.equal(done.status, 200, await done.clone().text());
    assert.equal((await done.json()).state, 'success');
    assert.equal((await adminIdentity(me.body.identity.id)).credentials.oidc?.identifiers?.length ?? 0, 0);

    // The account made by the provider alone cannot unlink it: it is its only way in.
    const solo = new Browser();
    const soloReg = await browserFlow(solo, 'registration');
    await nextAccount({ sub: `solo-${randomUUID()}`, claims: { email: `solo-${randomUUID()}@example.com`, email_verified: true } });
    await solo.fetch(await atProvider(solo, await clickProvider(solo, 'registration', soloReg)));
    const soloSettings = await (await solo.fetch(`${PUBLIC_URL}/self-service/settings/browser`, { headers: { accept: 'application/json' } })).json();
    const refused = await solo.fetch(`${PUBLIC_URL}/self-service/settings?flow=${soloSettings.id}`, { ...form({ csrf_token: csrfOf(soloSettings), unlink: PROVIDER }), headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } });
    assert.equal(refused.status, 400);
    assert.match(JSON.stringify((await refused.json()).ui.messages), /last remaining first factor/);
  });

  it('a registration flow that expires while the user is at the provider starts over without a session', async () => {
    // scripts/test gives the interop server's registration flows a lifespan of 5 s.
    const b = new Browser();
    const flow = await browserFlow(b, 'registration');
    const auth = await clickProvider(b, 'registration', flow);
    await new Promise((r) => setTimeout(r, 5500));
    await nextAccount({ sub: `late-${randomUUID()}`, claims: { email: `late-${randomUUID()}@example.com`, email_verified: true } });
    const res = await b.fetch(await atProvider(b, auth));
    assert.equal(res.status, 303);
    const to = new URL(res.headers.get('location'), PUBLIC_URL);
    const fresh = to.searchParams.get('flow');
    assert.ok(fresh && fresh !== flow.id, `a new flow: ${to}`);
    assert.equal(b.cookie(PUBLIC_URL, 'ory_kratos_session'), undefined);
    const shown = await (await b.fetch(`${PUBLIC_URL}/self-service/registration/flows?id=${fresh}`, { headers: { accept: 'application/json' } })).json();
    assert.equal(shown.ui.messages[0].id, 4040001);
  });

  it('an unknown provider is refused in the flow format', async () => {
    const b = new Browser();
    const flow = await browserFlow(b, 'login');
    const jar = b.jar(PUBLIC_URL);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const err = await frontend
      .updateLoginFlow({ flow: flow.id, cookie, updateLoginFlowBody: { method: 'oidc', provider: 'nope', csrf_token: csrfOf(flow) } })
      .then(() => assert.fail('expected an error'), (e) => e.response);
    assert.equal(err.status, 404);
    assert.match(err.data.error.reason, /"nope" is unknown/);
  });
});
