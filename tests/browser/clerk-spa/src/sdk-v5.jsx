// The app on `@clerk/clerk-react` 5 (Clerk Core 2). Its loader makes every script URL https,
// even under a relative `proxyUrl`, so a plain-http app also names the bundle it wants
// (served by Portcullis from the `@clerk/clerk-js-5` alias: clerk.frontend.assets_dir).
import {
  ClerkProvider,
  SignedIn,
  SignedOut,
  SignIn,
  SignUp,
  UserButton,
  UserProfile,
  useAuth,
  useClerk,
  useUser,
} from "@clerk/clerk-react"

export const sdk = { ClerkProvider, SignedIn, SignedOut, SignIn, SignUp, UserButton, UserProfile, useAuth, useClerk, useUser }

export const providerProps = { clerkJSUrl: "/__clerk/npm/@clerk/clerk-js@5/dist/clerk.browser.js" }
