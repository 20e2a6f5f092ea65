// Runtime configuration. The Portcullis public URL is chosen when the page
// loads, never at build time, in this order:
//   1. `?kratos=<url>` in the page URL (remembered in sessionStorage so that it
//      survives the redirects Elements performs after a successful submit),
//   2. the value remembered from an earlier `?kratos=`,
//   3. `/config.json`, which serve-spa.mjs generates from its options
//      (`--kratos` / PORTCULLIS_PUBLIC_URL).
const STORAGE_KEY = "portcullis.spa.kratos"

export async function loadRuntimeConfig() {
  let fileConfig = {}
  try {
    const res = await fetch("/config.json", { cache: "no-store" })
    if (res.ok) {
      fileConfig = await res.json()
    }
  } catch {
    // No config.json (e.g. another static server): rely on ?kratos=.
  }

  const params = new URLSearchParams(window.location.search)
  const fromQuery = params.get("kratos")
  if (fromQuery) {
    window.sessionStorage.setItem(STORAGE_KEY, fromQuery)
  }
  const kratosUrl = (
    fromQuery ||
    window.sessionStorage.getItem(STORAGE_KEY) ||
    fileConfig.kratosUrl ||
    ""
  ).replace(/\/+$/, "")

  return {
    kratosUrl,
    projectName: fileConfig.projectName || "Portcullis",
    recoveryEnabled: fileConfig.recoveryEnabled === true,
    verificationEnabled: fileConfig.verificationEnabled === true,
  }
}

// The object the Elements flow components take as `config`
// (type OryClientConfiguration in @ory/elements-react/dist/index.d.ts).
// project.* URLs are only used for links the card renders (sign-up link,
// "forgot password", logout fall-backs); all API calls go to sdk.url.
export function elementsConfig(rc) {
  const origin = window.location.origin
  return {
    sdk: {
      url: rc.kratosUrl,
      // frontendClient() in elements already forces credentials: "include"
      // and Accept: application/json; repeating it here is harmless.
      options: { credentials: "include" },
    },
    project: {
      name: rc.projectName,
      registration_enabled: true,
      verification_enabled: rc.verificationEnabled,
      recovery_enabled: rc.recoveryEnabled,
      registration_ui_url: `${origin}/registration`,
      login_ui_url: `${origin}/login`,
      recovery_ui_url: `${origin}/recovery`,
      verification_ui_url: `${origin}/verification`,
      settings_ui_url: `${origin}/settings`,
      error_ui_url: `${origin}/error`,
      default_redirect_url: `${origin}/home`,
    },
  }
}
