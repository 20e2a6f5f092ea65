// The app on `@clerk/react` 6 (Clerk Core 3). `<Show>` replaced v5's `<SignedIn>` and
// `<SignedOut>`; clerk-js and `@clerk/ui` are loaded from `proxyUrl`, nothing else to set.
import { ClerkProvider, Show, SignIn, SignUp, UserButton, UserProfile, useAuth, useClerk, useUser } from "@clerk/react"

export const sdk = {
  ClerkProvider,
  SignedIn: ({ children }) => <Show when="signed-in">{children}</Show>,
  SignedOut: ({ children }) => <Show when="signed-out">{children}</Show>,
  SignIn,
  SignUp,
  UserButton,
  UserProfile,
  useAuth,
  useClerk,
  useUser,
}

export const providerProps = {}
