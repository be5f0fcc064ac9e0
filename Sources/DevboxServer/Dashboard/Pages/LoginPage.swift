/// The sign-in form. Tokens are password fields and are never written back into the page.
enum LoginPage {
    static func render(loginCSRF: String, errors: [String: String], userTokensAccepted: Bool, notice: String?) -> HTML {
        let general: HTML = errors["form"].map { "<p class=\"form-error\" role=\"alert\" id=\"err-form\">\($0)</p>" } ?? .empty
        let userToken: HTML = """
            <div class="field">
              <label for="user_token">User token <span class="hint">(optional JWT, to act as one user of the provider)</span></label>
              <input type="password" id="user_token" name="user_token" autocomplete="off" spellcheck="false"\(Layout.invalid("user_token", errors))\(HTML.flag(!userTokensAccepted, "disabled"))>
              \(Layout.fieldError("user_token", errors))
              \(userTokensAccepted ? HTML.empty : "<p class=\"hint\">This server accepts no user tokens (no DEVBOX_USER_JWT_SECRET or DEVBOX_USER_JWKS_FILE).</p>")
            </div>
            """
        return Layout.page(title: "Sign in", csrf: nil, notice: notice, """
            <section class="card narrow">
            <h1>Sign in</h1>
            <p>Use a provider token made with <code>devbox token create</code>. It is checked once and
            never stored in this browser; a session cookie is set instead.</p>
            \(general)
            <form method="post" action="/login" id="login-form" novalidate>
              <input type="hidden" name="\(Web.csrfField)" value="\(loginCSRF)">
              <div class="field">
                <label for="provider_token">Provider token</label>
                <input type="password" id="provider_token" name="provider_token" autocomplete="off" spellcheck="false" required\(Layout.invalid("provider_token", errors))>
                \(Layout.fieldError("provider_token", errors))
              </div>
              \(userToken)
              <button type="submit" class="primary" id="sign-in">Sign in</button>
            </form>
            </section>
            """)
    }
}
