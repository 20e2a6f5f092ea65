// A React app written the way the university dashboard is: `@clerk/react` with
// `<ClerkProvider publishableKey>`, `<SignIn path routing="path">` and `<SignUp>`. The one
// prop a plain-http deployment adds is `proxyUrl="/__clerk"` (serve-spa.mjs forwards it to
// Portcullis). The key comes from /config.json, written at run time.
import { useEffect, useState } from "react"
import { createRoot } from "react-dom/client"
import { ClerkProvider, Show, SignIn, SignUp, UserButton, useAuth, useClerk, useUser } from "@clerk/react"

function Status() {
  const clerk = useClerk()
  return <p data-testid="clerk-status">{clerk.loaded ? "loaded" : "loading"}</p>
}

// The dashboard: who is signed in, the user button, and a call to the backend with the
// session token, as the university dashboard attaches `getToken()` to its API calls.
function Home() {
  const { user } = useUser()
  const { getToken } = useAuth()
  const [token, setToken] = useState("")
  return (
    <>
      <Show when="signed-in">
        <p data-testid="home-email">{user?.primaryEmailAddress?.emailAddress}</p>
        <UserButton />
        <button data-testid="get-token" onClick={async () => setToken((await getToken()) || "")}>
          get token
        </button>
        <pre data-testid="token">{token}</pre>
      </Show>
      <Show when="signed-out">
        <p data-testid="home-signed-out">signed out</p>
      </Show>
    </>
  )
}

function Page() {
  const path = window.location.pathname
  if (path.startsWith("/home")) return <Home />
  if (path.startsWith("/sign-up")) return <SignUp path="/sign-up" routing="path" signInUrl="/sign-in" />
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
    <ClerkProvider publishableKey={key} proxyUrl="/__clerk" telemetry={false} afterSignOutUrl="/home">
      <Status />
      <Page />
    </ClerkProvider>
  )
}

createRoot(document.getElementById("root")).render(<App />)
