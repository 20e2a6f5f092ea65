// End-to-end: a person with only a browser uses the pages Portcullis serves (/ui/*), in
// Debian's Chromium with JavaScript turned OFF, so every step proves the forms work as
// plain HTML. Each page is saved as a screenshot (`hosted-NN-*.png`).
//
// Run: PORTCULLIS_PUBLIC_URL=http://127.0.0.1:4433 node --test hosted-ui.test.mjs
// (scripts/test starts Portcullis and sets it; see harness.mjs for the other variables).
import { test } from "node:test"
import assert from "node:assert/strict"
import { openBrowser, publicUrl, uniqueSuffix } from "./harness.mjs"

const uniq = uniqueSuffix()
const EMAIL = `hosted-${uniq}@example.com`
const PASSWORD = `Pc-${uniq}-first-password`
const NEW_PASSWORD = `Pc-${uniq}-second-password`

test("hosted UI: sign up, sign out, sign in, settings, new password", async (t) => {
  const base = publicUrl()
  const { page, context, shot, step, close } = await openBrowser(t, {
    prefix: "hosted",
    contextOptions: { javaScriptEnabled: false, locale: "en-US" },
    logUrl: base,
  })
  const path = () => new URL(page.url()).pathname
  const field = (name) => page.locator(`input[name="${name}"]:not([type="hidden"])`)
  const messageFor = async (name) => {
    const ids = (await field(name).getAttribute("aria-describedby")) || ""
    assert.ok(ids, `${name} has no aria-describedby`)
    return (await page.locator(`#${ids.split(" ")[0]}`).textContent()).trim()
  }

  try {
    await step("sign up on the registration page", async () => {
      await page.goto(`${base}/ui/registration`)
      assert.equal(path(), "/ui/registration")
      assert.match(page.url(), /flow=/)
      await shot("registration")
      // Every visible input is labelled.
      for (const input of await page.locator('input:not([type="hidden"])').all()) {
        const id = await input.getAttribute("id")
        assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, `label for ${id}`)
      }
      await field("traits.email").fill(EMAIL)
      await field("traits.name.first").fill("Ada")
      await field("password").fill(PASSWORD)
      await page.getByRole("button", { name: "Sign up", exact: true }).click()
      await page.waitForURL(`${base}/ui/welcome`)
      assert.equal((await page.getByTestId("email").textContent()).trim(), EMAIL)
      await shot("welcome-after-registration")
    })

    await step("sign out from the welcome page", async () => {
      await page.getByTestId("logout").click()
      // Signed out, the welcome page sends the browser to sign in.
      await page.waitForURL((u) => u.pathname === "/ui/login")
      await shot("login-after-logout")
    })

    await step("a wrong password is reported next to the password field", async () => {
      await field("identifier").fill(EMAIL)
      await field("password").fill("not the password at all")
      await page.getByRole("button", { name: "Sign in with password" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      assert.match(await messageFor("password"), /The provided credentials are invalid/)
      assert.equal(await field("password").getAttribute("aria-invalid"), "true")
      assert.notEqual(await field("password").getAttribute("autofocus"), null)
      await shot("login-wrong-password")
    })

    await step("sign in with the keyboard alone", async () => {
      // Focus is on the password field (the error); the identifier kept its value.
      assert.equal(await field("identifier").inputValue(), EMAIL)
      await field("password").focus()
      await page.keyboard.type(PASSWORD)
      await page.keyboard.press("Enter")
      await page.waitForURL(`${base}/ui/welcome`)
      await shot("welcome-after-login")
    })

    await step("settings: change the name", async () => {
      await page.getByRole("link", { name: "Account settings" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await shot("settings")
      await field("traits.name.first").fill("Grace")
      await page.locator("form.group-profile button").click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await page.getByText("Your changes have been saved!").waitFor()
      assert.equal(await field("traits.name.first").inputValue(), "Grace")
      await shot("settings-profile-saved")
    })

    await step("settings: change the password", async () => {
      await page.locator("form.group-password").locator('input[name="password"]').fill(NEW_PASSWORD)
      await page.locator("form.group-password button").click()
      await page.waitForURL((u) => u.pathname === "/ui/settings")
      await page.getByText("Your changes have been saved!").waitFor()
      await shot("settings-password-saved")
    })

    await step("sign out, then sign in with the new password", async () => {
      await page.goto(`${base}/ui/welcome`)
      await page.getByTestId("logout").click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      await field("identifier").fill(EMAIL)
      await field("password").fill(PASSWORD)
      await page.getByRole("button", { name: "Sign in with password" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      assert.match(await messageFor("password"), /credentials are invalid/, "the old password is gone")
      await field("password").fill(NEW_PASSWORD)
      await page.getByRole("button", { name: "Sign in with password" }).click()
      await page.waitForURL(`${base}/ui/welcome`)
      assert.equal((await page.getByTestId("email").textContent()).trim(), EMAIL)
      await shot("welcome-with-new-password")
    })

    await step("the Korean page shows Korean labels and messages", async () => {
      await page.goto(`${base}/ui/welcome?lang=ko`)
      await page.getByRole("heading", { name: "활성 세션" }).waitFor()
      await shot("welcome-ko")
      await page.getByRole("link", { name: "로그아웃" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      // The language was remembered in a cookie.
      assert.equal(await page.locator("html").getAttribute("lang"), "ko")
      assert.match(await page.locator('label[for="field-password"]').textContent(), /^비밀번호/)
      assert.match(await page.locator('label[for="field-identifier"]').textContent(), /이메일/)
      await field("identifier").fill(EMAIL)
      await field("password").fill("wrong again")
      await page.getByRole("button", { name: "비밀번호로 로그인" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/login")
      assert.match(await messageFor("password"), /입력한 로그인 정보가 올바르지 않습니다/)
      await shot("login-ko-wrong-password")
      await page.goto(`${base}/ui/login?lang=en`)
    })

    await step("a form posted without the CSRF cookie is refused", async () => {
      await page.goto(`${base}/ui/login`)
      await field("identifier").waitFor()
      const before = await context.cookies()
      await context.clearCookies()
      await field("identifier").fill(EMAIL)
      await field("password").fill(NEW_PASSWORD)
      await page.getByRole("button", { name: "Sign in with password" }).click()
      await page.waitForURL((u) => u.pathname === "/ui/error")
      assert.match(await page.locator("main").textContent(), /security_csrf_violation/)
      assert.ok(!(await context.cookies()).some((c) => c.name === "ory_kratos_session"))
      await shot("error-csrf")
      await context.addCookies(before.filter((c) => c.name === "portcullis_lang"))
    })

    await step("an unlisted return_to is refused", async () => {
      await page.goto(`${base}/self-service/login/browser?return_to=https://evil.example/steal`)
      await page.waitForURL((u) => u.pathname === "/ui/error")
      assert.match(await page.locator("main").textContent(), /self_service_flow_return_to_forbidden/)
      await shot("error-return-to")
    })

    await step("pages carry a strict Content-Security-Policy", async () => {
      const r = await page.goto(`${base}/ui/login`)
      const h = await r.allHeaders()
      assert.match(h["content-security-policy"], /frame-ancestors 'none'/)
      assert.equal(h["x-content-type-options"], "nosniff")
      assert.equal(h["referrer-policy"], "no-referrer")
    })
  } finally {
    await close()
  }
})
