// A React app written the way the university dashboard is: `<ClerkProvider publishableKey>`,
// `<SignIn path routing="path">`, `<SignUp>`, `<UserButton>`, `<UserProfile>`. The one prop a
// plain-http deployment adds is `proxyUrl="/__clerk"` (serve-spa.mjs forwards it to
// Portcullis). The key comes from /config.json, written at run time. The dashboard's data
// comes from its Django backend (tests/browser/dashboard/), on the same origin under /api/,
// with the session token as `Authorization: Bearer`.
//
// Built once per SDK generation: `#sdk` is src/sdk-v6.jsx (`@clerk/react` 6) or
// src/sdk-v5.jsx (`@clerk/clerk-react` 5), chosen by the Vite mode (vite.config.js).
import { useEffect, useState } from "react"
import { createRoot } from "react-dom/client"
import { providerProps, sdk } from "#sdk"

const { ClerkProvider, SignedIn, SignedOut, SignIn, SignUp, UserButton, UserProfile, useAuth, useClerk, useUser } = sdk

function Status() {
  const clerk = useClerk()
  return <p data-testid="clerk-status">{clerk.loaded ? "loaded" : "loading"}</p>
}

const wrap = { whiteSpace: "pre-wrap", wordBreak: "break-all", maxWidth: "60em" }

// The dashboard: who is signed in, the user button, and a call to the backend with the
// session token, as the university dashboard attaches `getToken()` to its API calls.
function Home() {
  const { user } = useUser()
  const { getToken } = useAuth()
  const [token, setToken] = useState("")
  const [dashboard, setDashboard] = useState("")
  // A fresh token each time (skipCache), so claims changed since the last one show at once.
  const load = async () => {
    const jwt = await getToken({ skipCache: true })
    setToken(jwt || "")
    const r = await fetch("/api/dashboard/", { headers: { Authorization: `Bearer ${jwt}` } })
    setDashboard(`${r.status} ${await r.text()}`)
  }
  return (
    <>
      <SignedIn>
        <p data-testid="home-email">{user?.primaryEmailAddress?.emailAddress}</p>
        <UserButton />
        <button data-testid="load-dashboard" onClick={load}>
          load dashboard
        </button>
        <pre data-testid="token" style={wrap}>{token}</pre>
        <pre data-testid="dashboard" style={wrap}>{dashboard}</pre>
      </SignedIn>
      <SignedOut>
        <p data-testid="home-signed-out">signed out</p>
      </SignedOut>
    </>
  )
}

function Page() {
  const path = window.location.pathname
  if (path.startsWith("/home")) return <Home />
  if (path.startsWith("/profile")) return <UserProfile path="/profile" routing="path" />
  if (path.startsWith("/sign-up")) return <SignUp path="/sign-up" routing="path" signInUrl="/sign-in" fallbackRedirectUrl="/home" />
  return <SignIn path="/sign-in" routing="path" signUpUrl="/sign-up" fallbackRedirectUrl="/home" />
}

function App() {
  const [key, setKey] = useState()
  useEffect(() => {
    fetch("/config.json", { cache: "no-store" })
      .then((r) => r.json())
      .then((c) => setKey(c.publishableKey))
  }, [])
  if (!key) return <p>…</p>
  return (
    <ClerkProvider publishableKey={key} proxyUrl="/__clerk" telemetry={false} afterSignOutUrl="/home" {...providerProps}>
      <Status />
      <Page />
    </ClerkProvider>
  )
}

createRoot(document.getElementById("root")).render(<App />)
