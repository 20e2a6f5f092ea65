// Portcullis: the WebAuthn and passkey ceremonies of the self-service forms.
//
// Served at /.well-known/ory/webauthn.js and loaded by the `webauthn_script` node. It defines
// the window functions Ory's UIs call through a node's `onclickTrigger` / `onloadTrigger`
// (and their older `__ory…` names): each reads the options the server put into the form,
// runs the ceremony, writes the result as JSON into the form's hidden field and submits the
// form. Binary fields travel as unpadded base64url both ways. The hosted UI marks its buttons
// with `data-portcullis-trigger` (and `data-portcullis-onload`) instead of inline handlers,
// which its Content-Security-Policy forbids; this script binds those.
(function () {
  "use strict";
  if (window.__oryWebAuthnInitialized) {
    return;
  }
  if (!window.PublicKeyCredential) {
    console.warn("This browser does not support WebAuthn: security keys and passkeys are unavailable.");
    return;
  }
  window.__oryWebAuthnInitialized = true;

  function decode(text) {
    var b64 = String(text).replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function encode(buffer) {
    if (!buffer) {
      return "";
    }
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // The field `name`, in the form of `near` when there is one (a page may have several forms
  // with the same fields), else anywhere on the page.
  function field(name, near) {
    var selector = '[name="' + name + '"]';
    var form = near && near.closest ? near.closest("form") : null;
    return (form && form.querySelector(selector)) || document.querySelector(selector);
  }

  function options(given, name) {
    var value = given;
    if (value === undefined || value === null || value === "") {
      var el = field(name);
      value = el ? el.value : "";
    }
    if (!value) {
      throw new Error("Portcullis: the form has no WebAuthn options in " + name);
    }
    return typeof value === "string" ? JSON.parse(value) : value;
  }

  function credentialList(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: decode(c.id) });
    });
  }

  // Only `publicKey` reaches the browser: a `mediation` the server wrote is ignored.
  function creation(opts) {
    var pk = Object.assign({}, opts.publicKey);
    pk.challenge = decode(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: decode(pk.user.id) });
    pk.excludeCredentials = credentialList(pk.excludeCredentials);
    return pk;
  }

  function request(opts) {
    var pk = Object.assign({}, opts.publicKey);
    pk.challenge = decode(pk.challenge);
    pk.allowCredentials = credentialList(pk.allowCredentials);
    return pk;
  }

  function extensions(cred) {
    try {
      return cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    } catch (e) {
      return {};
    }
  }

  function created(cred) {
    return JSON.stringify({
      id: cred.id,
      rawId: encode(cred.rawId),
      type: cred.type,
      extensions: extensions(cred),
      response: {
        clientDataJSON: encode(cred.response.clientDataJSON),
        attestationObject: encode(cred.response.attestationObject),
      },
    });
  }

  function asserted(cred) {
    return JSON.stringify({
      id: cred.id,
      rawId: encode(cred.rawId),
      type: cred.type,
      extensions: extensions(cred),
      response: {
        authenticatorData: encode(cred.response.authenticatorData),
        clientDataJSON: encode(cred.response.clientDataJSON),
        signature: encode(cred.response.signature),
        userHandle: encode(cred.response.userHandle),
      },
    });
  }

  function submit(name, value) {
    var el = field(name);
    if (!el) {
      throw new Error("Portcullis: the form has no " + name + " field");
    }
    el.value = value;
    el.closest("form").submit();
  }

  function failed(err) {
    if (err && err.name === "AbortError") {
      return;
    }
    console.error("WebAuthn ceremony failed:", err);
  }

  // The conditional (autofill) request waiting on the page; a button press replaces it.
  var waiting = null;

  function stopWaiting() {
    if (waiting) {
      waiting.abort();
      waiting = null;
    }
  }

  // Runs a sign-in request and submits its answer in the field `into`; with `signal`, as the
  // browser's autofill (conditional mediation), which a button press may abort.
  function signIn(publicKey, into, signal) {
    var args = { publicKey: publicKey };
    if (signal) {
      args.mediation = "conditional";
      args.signal = signal;
    }
    return navigator.credentials
      .get(args)
      .then(function (cred) {
        waiting = null;
        submit(into, asserted(cred));
      })
      .catch(failed);
  }

  // Runs a creation request and submits its answer in the field `into`.
  function register(publicKey, into) {
    return navigator.credentials
      .create({ publicKey: publicKey })
      .then(function (cred) {
        submit(into, created(cred));
      })
      .catch(failed);
  }

  function webAuthnLogin(given) {
    stopWaiting();
    return signIn(request(options(given, "webauthn_login_trigger")), "webauthn_login");
  }

  function webAuthnRegistration(given) {
    // A key needs a name: without one the form goes back for it before the key is touched.
    var nameField = field("webauthn_register_displayname", field("webauthn_register_trigger"));
    if (nameField && !nameField.value.trim()) {
      submit("webauthn_register", "");
      return Promise.resolve();
    }
    return register(creation(options(given, "webauthn_register_trigger")), "webauthn_register");
  }

  function passkeyLogin() {
    stopWaiting();
    return signIn(request(options(undefined, "passkey_challenge")), "passkey_login");
  }

  function passkeyLoginAutocompleteInit() {
    if (!PublicKeyCredential.isConditionalMediationAvailable) {
      return Promise.resolve();
    }
    return PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available || !field("passkey_challenge")) {
        return;
      }
      stopWaiting();
      waiting = new AbortController();
      var publicKey = request(options(undefined, "passkey_challenge"));
      return signIn(publicKey, "passkey_login", waiting.signal);
    });
  }

  function passkeyCreate(into, withDisplayName) {
    var data = options(undefined, "passkey_create_data");
    var pk = creation(data.credentialOptions);
    if (withDisplayName && data.displayNameFieldName) {
      var nameField = field(data.displayNameFieldName, field("passkey_create_data"));
      if (nameField && nameField.value) {
        pk.user.name = nameField.value;
        pk.user.displayName = nameField.value;
      }
    }
    return register(pk, into);
  }

  function passkeyRegistration() {
    return passkeyCreate("passkey_register", true);
  }

  function passkeySettingsRegistration() {
    return passkeyCreate("passkey_settings_register", false);
  }

  var functions = {
    oryWebAuthnLogin: webAuthnLogin,
    oryWebAuthnRegistration: webAuthnRegistration,
    oryPasskeyLogin: passkeyLogin,
    oryPasskeyLoginAutocompleteInit: passkeyLoginAutocompleteInit,
    oryPasskeyRegistration: passkeyRegistration,
    oryPasskeySettingsRegistration: passkeySettingsRegistration,
  };
  Object.keys(functions).forEach(function (name) {
    window[name] = functions[name];
    window["__" + name] = functions[name];
  });

  function bind() {
    document.querySelectorAll("[data-portcullis-trigger]").forEach(function (el) {
      var fn = functions[el.getAttribute("data-portcullis-trigger")];
      if (fn) {
        el.addEventListener("click", function (event) {
          event.preventDefault();
          fn();
        });
      }
    });
    var started = {};
    document.querySelectorAll("[data-portcullis-onload]").forEach(function (el) {
      var name = el.getAttribute("data-portcullis-onload");
      if (functions[name] && !started[name]) {
        started[name] = true;
        functions[name]();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", bind);
  } else {
    bind();
  }
})();
