import DevboxModel
import Foundation

/// Snapshots (issue 23): the user's snapshots with their sizes, each with a delete button;
/// and the devbox page's "Snapshot and fork" section.
enum SnapshotsPage {
    static func render(snapshots: [Snapshot], csrf: String, notice: String?, error: String? = nil, now: Date = Date()) -> HTML {
        let rows: [HTML] = snapshots.map { s in
            """
            <tr data-snapshot="\(s.id)">
              <td data-label="Name"><span class="cell"><span data-snapshot-name>\(s.name)</span><br><code class="id">\(s.id)</code></span></td>
              <td data-label="Size"><span data-snapshot-size="\(String(s.sizeBytes))">\(bytes(s.sizeBytes))</span></td>
              <td data-label="From"><a href="/devboxes/\(s.devboxId)"><code>\(s.devboxId)</code></a></td>
              <td data-label="Image"><span>\(s.image ?? "—")</span></td>
              <td data-label="Age"><time datetime="\(Display.time(s.createdAt))">\(Display.age(since: s.createdAt, now: now))</time></td>
              <td data-label="Actions">
                <a class="button secondary" href="/devboxes/new?snapshot=\(s.name)" data-snapshot-create>New devbox</a>
                <form method="post" action="/snapshots/\(s.id)/delete" class="inline">
                  \(Layout.csrfField(csrf))
                  <button type="submit" class="danger" aria-label="Delete snapshot \(s.name)" data-snapshot-delete>Delete</button>
                </form>
              </td>
            </tr>
            """
        }
        let total = snapshots.reduce(Int64(0)) { $0 + $1.sizeBytes }
        let table: HTML =
            snapshots.isEmpty
            ? "<p class=\"empty\" id=\"no-snapshots\">No snapshots yet. Take one from a ready or stopped devbox's page.</p>"
            : """
                <table class="devboxes" id="snapshots">
                  <caption class="sr-only">Your snapshots</caption>
                  <thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col">From devbox</th><th scope="col">Image</th><th scope="col">Age</th><th scope="col">Actions</th></tr></thead>
                  <tbody>\(rows)</tbody>
                </table>
                <p class="hint" id="snapshots-total">\(snapshots.count) snapshot(s), \(bytes(total)) in all (counted against your snapshot quota).</p>
                """
        let failure: HTML = error.map { "<p class=\"form-error\" role=\"alert\" id=\"snapshot-error\">\($0)</p>" } ?? .empty
        return Layout.page(title: "Snapshots", csrf: csrf, section: .snapshots, notice: notice, """
            <div class="heading"><h1>Snapshots</h1></div>
            \(failure)
            <p class="hint">A snapshot holds a devbox's files (not its processes, env values or AI tokens); new devboxes can start from it.
              Deleting one frees its name at once; its files stay while devboxes made from it exist.</p>
            \(table)
            """)
    }

    /// "52.4 MB"-style sizes in binary units.
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }

    static let states: Set<DevboxState> = [.ready, .stopped]

    /// The devbox page's section: snapshot (name) and fork (count, name, copy env).
    static func devboxSection(_ d: Devbox, csrf: String, errors: [String: String]) -> HTML {
        let body: HTML
        if states.contains(d.state) {
            body = """
                <p class="hint">Files only: processes are not copied, env values only when you tick it, AI tokens never.
                  A running devbox pauses while its changes are copied.</p>
                <form method="post" action="/devboxes/\(d.id)/snapshots" class="row" id="snapshot-form">
                  \(Layout.csrfField(csrf))
                  <div class="field">
                    <label for="snapshot_name">Snapshot name</label>
                    <input id="snapshot_name" name="name" required maxlength="64" autocomplete="off"\(Layout.invalid("snapshot_name", errors))>
                    \(Layout.fieldError("snapshot_name", errors))
                  </div>
                  <button type="submit" class="primary" id="take-snapshot">Take snapshot</button>
                </form>
                <form method="post" action="/devboxes/\(d.id)/fork" class="row" id="fork-form">
                  \(Layout.csrfField(csrf))
                  <div class="field small">
                    <label for="fork_count">Forks</label>
                    <input id="fork_count" name="count" type="number" min="1" max="32" value="1" required inputmode="numeric"\(Layout.invalid("fork_count", errors))>
                    \(Layout.fieldError("fork_count", errors))
                  </div>
                  <div class="field">
                    <label for="fork_name">Name <span class="hint">(optional; of the snapshot, and prefix of the new devboxes)</span></label>
                    <input id="fork_name" name="name" maxlength="64" autocomplete="off"\(Layout.invalid("fork_name", errors))>
                    \(Layout.fieldError("fork_name", errors))
                  </div>
                  <div class="field check">
                    <input type="checkbox" id="fork_copy_env" name="copy_env">
                    <label for="fork_copy_env">Copy env values</label>
                  </div>
                  <button type="submit" class="secondary" id="fork-devbox">Fork</button>
                </form>
                \(Layout.fieldError("snapshot", errors))
                """
        } else {
            body = "<p class=\"hint\">Snapshots and forks can be taken of a ready or stopped devbox.</p>"
        }
        return """
            <section aria-labelledby="snapshot-h" id="snapshot">
              <h2 id="snapshot-h">Snapshot and fork</h2>
              \(body)
            </section>
            """
    }
}
