import DevboxService
import Foundation

/// The frame of every page: head (our own stylesheet and script only), navigation with
/// sign-out when signed in, the main content.
enum Layout {
    enum Section { case devboxes, create, snapshots, account, none }

    static func page(
        title: String, csrf: String?, section: Section = .none, notice: String? = nil, _ body: HTML
    ) -> HTML {
        let nav: HTML
        if let csrf {
            func link(_ href: String, _ label: String, _ s: Section) -> HTML {
                "<a href=\"\(href)\"\(section == s ? HTML(raw: " aria-current=\"page\"") : .empty)>\(label)</a>"
            }
            nav = """
                <nav aria-label="Main">
                  \(link("/", "Devboxes", .devboxes))
                  \(link("/devboxes/new", "New devbox", .create))
                  \(link("/snapshots", "Snapshots", .snapshots))
                  \(link("/account", "Account", .account))
                  <form method="post" action="/logout" class="inline">
                    \(csrfField(csrf))
                    <button type="submit" class="link" id="sign-out">Sign out</button>
                  </form>
                </nav>
                """
        } else {
            nav = .empty
        }
        let flash: HTML = notice.map { "<p class=\"notice\" role=\"status\">\($0)</p>" } ?? .empty
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(title) · devbox</title>
            <link rel="stylesheet" href="/dashboard/assets/app.css">
            <script src="/dashboard/assets/app.js" defer></script>
            </head>
            <body>
            <a class="skip" href="#main">Skip to content</a>
            <header class="top">
              <a class="brand" href="/">devbox</a>
              \(nav)
            </header>
            <main id="main">
            \(flash)
            \(body)
            </main>
            </body>
            </html>
            """
    }

    static func csrfField(_ token: String) -> HTML {
        "<input type=\"hidden\" name=\"\(Web.csrfField)\" value=\"\(token)\">"
    }

    /// The error paragraph of a field (empty when the field is fine).
    static func fieldError(_ id: String, _ errors: [String: String]) -> HTML {
        guard let m = errors[id] else { return .empty }
        return "<p class=\"field-error\" id=\"err-\(id)\" role=\"alert\">\(m)</p>"
    }

    /// `aria-invalid` and `aria-describedby` for a field with an error.
    static func invalid(_ id: String, _ errors: [String: String]) -> HTML {
        errors[id] == nil ? .empty : " aria-invalid=\"true\" aria-describedby=\"err-\(id)\""
    }

    static func stateBadge(_ state: String, attrs: HTML = .empty) -> HTML {
        "<span class=\"state state-\(state)\"\(attrs)>\(state)</span>"
    }

    /// A page for errors the dashboard answers in HTML (404, 403, 503…).
    static func errorPage(title: String, message: String, csrf: String?) -> HTML {
        page(title: title, csrf: csrf, """
            <h1>\(title)</h1>
            <p class="error-message">\(message)</p>
            <p><a href="/">Back to your devboxes</a></p>
            """)
    }
}
