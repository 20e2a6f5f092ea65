// A React app written the way the university dashboard is: `@clerk/react` with
// `<ClerkProvider publishableKey>`, `<SignIn path routing="path">` and `<SignUp>`. The one
// prop a plain-http deployment adds is `proxyUrl="/__clerk"` (serve-spa.mjs forwards it to
// Portcullis). The key comes from /config.json, written at run time.
import { useEffect, useState } from "react"
import { createRoot } from "react-dom/client"
import { ClerkProvider, SignIn, SignUp, useClerk } from "@clerk/react"

function Status() {
  const clerk = useClerk()
  return <p data-testid="clerk-status">{clerk.loaded ? "loaded" : "loading"}</p>
}

function Page() {
  const path = window.location.pathname
  if (path.startsWith("/sign-up")) return <SignUp path="/sign-up" routing="path" signInUrl="/sign-in" />
  return <SignIn path="/sign-in" routing="path" signUpUrl="/sign-up" />
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
    <ClerkProvider publishableKey={key} proxyUrl="/__clerk" telemetry={false}>
      <Status />
      <Page />
    </ClerkProvider>
  )
}

createRoot(document.getElementById("root")).render(<App />)
