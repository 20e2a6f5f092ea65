// A minimal single-page app that renders Ory Elements (@ory/elements-react)
// against Portcullis. Routes:
//   /registration  Elements <Registration> (creates or loads a browser flow)
//   /login         Elements <Login>
//   /home          calls GET <kratos>/sessions/whoami and shows the email
// Any other path shows a small index.
import { useEffect, useState } from "react"
import { createRoot } from "react-dom/client"
import { Configuration, FrontendApi } from "@ory/client-fetch"
import { Login, Registration } from "@ory/elements-react/theme"
import "@ory/elements-react/theme/styles.css"
import { elementsConfig, loadRuntimeConfig } from "./config.js"

function frontendApi(kratosUrl) {
  return new FrontendApi(
    new Configuration({
      basePath: kratosUrl,
      credentials: "include",
      headers: { Accept: "application/json" },
    }),
  )
}

// Turns an SDK error (ResponseError / FetchError) into something printable.
async function describeError(err) {
  if (err && err.response && typeof err.response.status === "number") {
    let body
    try {
      body = await err.response.clone().json()
    } catch {
      try {
        body = await err.response.clone().text()
      } catch {
        body = undefined
      }
    }
    return { status: err.response.status, body }
  }
  return { status: 0, body: String((err && (err.cause || err.message)) || err) }
}

function ErrorBox({ error }) {
  return (
    <pre data-testid="spa-error" style={{ whiteSpace: "pre-wrap", color: "#b00" }}>
      {JSON.stringify(error, null, 2)}
    </pre>
  )
}

// Loads the flow named by ?flow=<id>, or creates a new browser flow
// (GET /self-service/<kind>/browser with Accept: application/json, which
// also sets the CSRF cookie). ?return_to= is forwarded to flow creation.
function useBrowserFlow(rc, kind) {
  const [state, setState] = useState({ flow: undefined, error: undefined })

  useEffect(() => {
    let cancelled = false
    const api = frontendApi(rc.kratosUrl)
    const params = new URLSearchParams(window.location.search)
    const flowId = params.get("flow")
    const returnTo = params.get("return_to") || undefined

    const load = async () => {
      try {
        let flow
        if (kind === "login") {
          flow = flowId
            ? await api.getLoginFlow({ id: flowId })
            : await api.createBrowserLoginFlow({ returnTo })
        } else {
          flow = flowId
            ? await api.getRegistrationFlow({ id: flowId })
            : await api.createBrowserRegistrationFlow({ returnTo })
        }
        if (!cancelled) setState({ flow, error: undefined })
      } catch (err) {
        const error = await describeError(err)
        const id = error.body && error.body.error && error.body.error.id
        if (id === "session_already_available") {
          // Same as Kratos' browser behaviour: a signed-in user goes home.
          window.location.assign(returnTo || "/home")
          return
        }
        if (flowId && [403, 404, 410].includes(error.status)) {
          // Unknown, expired or foreign flow: start a fresh one.
          const url = new URL(window.location.href)
          url.searchParams.delete("flow")
          const useFlowId = error.body && error.body.use_flow_id
          if (useFlowId) url.searchParams.set("flow", useFlowId)
          window.location.replace(url.toString())
          return
        }
        if (!cancelled) setState({ flow: undefined, error })
      }
    }
    void load()
    return () => {
      cancelled = true
    }
  }, [rc.kratosUrl, kind])

  return state
}

function FlowPage({ rc, kind }) {
  const { flow, error } = useBrowserFlow(rc, kind)
  if (error) return <ErrorBox error={error} />
  if (!flow) return <p data-testid="spa-loading">Loading {kind} flow…</p>

  const config = elementsConfig(rc)
  const Component = kind === "login" ? Login : Registration
  return (
    <div data-testid={`spa-flow-${kind}`} data-flow-id={flow.id}>
      <Component flow={flow} config={config} />
    </div>
  )
}

function HomePage({ rc }) {
  const [state, setState] = useState({ status: "loading" })

  const refresh = async () => {
    setState({ status: "loading" })
    try {
      const res = await fetch(`${rc.kratosUrl}/sessions/whoami`, {
        credentials: "include",
        headers: { Accept: "application/json" },
      })
      const body = await res.json().catch(() => undefined)
      if (res.status === 200) {
        setState({ status: "signed_in", session: body })
      } else if (res.status === 401) {
        setState({ status: "signed_out", body })
      } else {
        setState({ status: "error", error: { status: res.status, body } })
      }
    } catch (err) {
      setState({ status: "error", error: await describeError(err) })
    }
  }

  useEffect(() => {
    void refresh()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [rc.kratosUrl])

  // SPA logout: GET /self-service/logout/browser (JSON) gives a logout token,
  // then GET /self-service/logout?token=… with Accept: application/json
  // revokes the session (204).
  const logout = async () => {
    const api = frontendApi(rc.kratosUrl)
    try {
      const logoutFlow = await api.createBrowserLogoutFlow()
      await api.updateLogoutFlow({ token: logoutFlow.logout_token })
      await refresh()
    } catch (err) {
      setState({ status: "error", error: await describeError(err) })
    }
  }

  if (state.status === "loading") {
    return <p data-testid="spa-loading">Checking session…</p>
  }
  if (state.status === "error") {
    return <ErrorBox error={state.error} />
  }
  if (state.status === "signed_out") {
    return (
      <div>
        <p data-testid="spa-signed-out">signed out</p>
        <a href="/login">Sign in</a> · <a href="/registration">Sign up</a>
      </div>
    )
  }

  const identity = (state.session && state.session.identity) || {}
  const traits = identity.traits || {}
  return (
    <div>
      <p data-testid="spa-signed-in">signed in</p>
      <p>
        Email: <span data-testid="spa-email">{traits.email || ""}</span>
      </p>
      <p>
        Identity: <span data-testid="spa-identity-id">{identity.id || ""}</span>
      </p>
      <button type="button" data-testid="spa-logout" onClick={() => void logout()}>
        Log out
      </button>
      <pre data-testid="spa-session" style={{ whiteSpace: "pre-wrap", fontSize: 11 }}>
        {JSON.stringify(state.session, null, 2)}
      </pre>
    </div>
  )
}

function IndexPage({ rc }) {
  return (
    <div>
      <p>Portcullis Elements SPA. Public API: {rc.kratosUrl || "(not configured)"}</p>
      <ul>
        <li><a href="/registration">/registration</a></li>
        <li><a href="/login">/login</a></li>
        <li><a href="/home">/home</a></li>
      </ul>
    </div>
  )
}

function App({ rc }) {
  if (!rc.kratosUrl) {
    return (
      <ErrorBox
        error={{ status: 0, body: "No Portcullis URL: open the page with ?kratos=<url> or serve /config.json" }}
      />
    )
  }
  const path = window.location.pathname.replace(/\/+$/, "") || "/"
  switch (path) {
    case "/registration":
      return <FlowPage rc={rc} kind="registration" />
    case "/login":
      return <FlowPage rc={rc} kind="login" />
    case "/home":
      return <HomePage rc={rc} />
    default:
      return <IndexPage rc={rc} />
  }
}

void loadRuntimeConfig().then((rc) => {
  createRoot(document.getElementById("root")).render(<App rc={rc} />)
})
