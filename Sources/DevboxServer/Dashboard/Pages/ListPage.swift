import DevboxModel
import Foundation

/// The devbox list: live state (polled by app.js), plan, age, repositories.
enum ListPage {
    static func render(devboxes: [Devbox], csrf: String, notice: String?, now: Date = Date()) -> HTML {
        let visible = devboxes.filter { $0.state != .destroyed }
        let destroyed = devboxes.count - visible.count
        let rows: [HTML] = visible.map { d in
            let repos = d.repositories.map(\.fullName).joined(separator: ", ")
            return """
                <tr data-devbox="\(d.id)">
                  <td data-label="Name"><span class="cell"><a href="/devboxes/\(d.id)">\(d.name)</a><br><code class="id">\(d.id)</code></span></td>
                  <td data-label="State">\(Layout.stateBadge(d.state.rawValue, attrs: " data-state"))</td>
                  <td data-label="Plan"><span>\(d.plan)</span></td>
                  <td data-label="Age"><time datetime="\(Display.time(d.createdAt))">\(Display.age(since: d.createdAt, now: now))</time></td>
                  <td data-label="Repositories"><span>\(repos.isEmpty ? "—" : repos)</span></td>
                </tr>
                """
        }
        let table: HTML =
            visible.isEmpty
            ? "<p class=\"empty\" id=\"no-devboxes\">No devboxes yet. <a href=\"/devboxes/new\">Create one</a>.</p>"
            : """
                <table class="devboxes">
                  <caption class="sr-only">Your devboxes</caption>
                  <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Plan</th><th scope="col">Age</th><th scope="col">Repositories</th></tr></thead>
                  <tbody>\(rows)</tbody>
                </table>
                """
        let footer: HTML = destroyed > 0 ? "<p class=\"hint\">\(destroyed) destroyed devbox(es) not shown.</p>" : .empty
        return Layout.page(title: "Devboxes", csrf: csrf, section: .devboxes, notice: notice, """
            <div class="heading">
              <h1>Devboxes</h1>
              <a class="button primary" href="/devboxes/new" id="new-devbox">New devbox</a>
            </div>
            <div data-live-list>\(table)</div>
            \(footer)
            """)
    }
}
