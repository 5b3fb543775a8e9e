/*
 * firstparty tracker: the readable source. `make tracker` builds the served variants from it
 * (collector/tracker/build.py runs terser with each feature flag below set to true or false).
 *
 * Build flags (replaced at build time; dead branches are removed):
 *   OUTBOUND  - "Outbound Link: Click" events for links to other hosts
 *   DOWNLOADS - "File Download" events for links to files (data-file-types extends the list)
 *   TAGGED    - events from CSS classes: class="firstparty-event-name=Signup firstparty-event-plan=pro"
 *   VERSION   - the tracker version sent as `v`
 *   FILE_TYPES - the default comma-separated list of download extensions
 *
 * Rules this file keeps: no cookies, no storage writes (only reads the opt-out flag), no request
 * except to the collector, nothing sent from localhost unless data-allow-localhost is set, and
 * no exception ever reaches the page (every entry point is wrapped).
 */
(function (win, doc, loc, nav) {
  var script;
  var endpoint;
  var domain;
  var hashMode;
  var lastPage;
  var pageUrl; // the page engagement is being measured for; unset when it is excluded
  var visibleSince;
  var engagedMs;
  var maxPx;
  var sentDepth;

  // Callers run this inside try: localStorage may throw (storage disabled), and so may fetch.
  function send(fields) {
    if (
      // An empty hostname is a file: page.
      (/^(localhost|127\.[\d.]+|\[::1\]|)$/.test(loc.hostname) && attr("allow-localhost") == null) ||
      // The site's own opt-out page sets this flag (any value); the tracker only ever reads it.
      localStorage.firstparty_ignore
    )
      return;
    // Keys left undefined are dropped by JSON.stringify.
    var body = JSON.stringify({ v: VERSION, u: loc.href, d: domain, r: doc.referrer, h: hashMode, ...fields });
    // A string body is sent as text/plain, a "simple" request: no CORS preflight.
    // Every browser that parses this file has sendBeacon; it returns false when its queue is full.
    if (!nav.sendBeacon(endpoint, body))
      fetch(endpoint, { method: "POST", body: body, keepalive: true }).catch(Object);
  }

  // The public API: firstparty(name, {props, callback, interactive}).
  function track(name, options) {
    options = options || {};
    try {
      send({ n: name, p: options.props, i: options.interactive });
    } catch (e) {}
    // Beacons outlive the page, so the callback (e.g. a navigation) need not wait for a reply.
    if (options.callback) options.callback();
  }

  // Does the path match data-<name>, a list of patterns where * is one segment and ** any?
  function matches(name, path) {
    return (attr(name) || "").split(",").some(function (pattern) {
      pattern = pattern.trim();
      return (
        pattern &&
        new RegExp(
          "^" +
            pattern
              .replace(/[^\w/*-]/g, "\\$&")
              .replace(/\*\*?/g, function (stars) {
                return stars[1] ? ".*" : "[^/]*";
              }) +
            "/?$"
        ).test(path)
      );
    });
  }

  function onScroll() {
    var px = win.scrollY + win.innerHeight;
    if (px > maxPx) maxPx = px;
  }

  function elapsed() {
    return engagedMs + (visibleSince ? Date.now() - visibleSince : 0);
  }

  // Engagement for the current page, sent only when time or scroll depth grew since the last one.
  function engage() {
    if (!pageUrl) return;
    var ms = elapsed();
    // The collector caps this at 100 (the page may have shrunk since the deepest scroll).
    var depth = Math.round((maxPx / doc.documentElement.scrollHeight) * 100);
    if (ms || depth > sentDepth) {
      // Non-interactive without saying so: the collector defaults `i` to false for engagement.
      send({ n: "engagement", u: pageUrl, e: ms, sd: depth });
      sentDepth = depth;
      engagedMs = 0;
      if (visibleSince) visibleSince = Date.now();
    }
  }

  function onVisibility(event) {
    try {
      if (!doc.hidden && event.type != "pagehide") {
        visibleSince = visibleSince || Date.now();
      } else {
        engagedMs = elapsed();
        visibleSince = 0;
        engage();
      }
    } catch (e) {}
  }

  function page() {
    try {
      var path = loc.pathname + (hashMode ? loc.hash : "");
      // A page prerendered for a link the visitor may never follow is counted once shown.
      if (doc.prerendering || path == lastPage) return;
      lastPage = path;
      engage();
      pageUrl = 0;
      if (matches("exclude", path) || (attr("include") && !matches("include", path))) return;
      pageUrl = loc.href;
      engagedMs = 0;
      sentDepth = -1;
      visibleSince = doc.hidden ? 0 : Date.now();
      maxPx = 0;
      onScroll();
      send({ n: "pageview" });
    } catch (e) {}
  }

  function onClick(event) {
    try {
      if (event.type == "auxclick" && event.button != 1) return;
      var target = event.target;
      if (TAGGED) {
        var tagged = target.closest("[class*=firstparty-event-name]");
        if (tagged) {
          var name;
          var props = {};
          tagged.classList.forEach(function (cls) {
            var m = cls.match(/^firstparty-event-(.+?)=(.+)/);
            if (m) {
              var value = m[2].replace(/\+/g, " ");
              if (m[1] == "name") name = value;
              else props[m[1]] = value;
            }
          });
          if (name) return track(name, { props: props });
        }
      }
      var link = target.closest("a[href]");
      if (!link || !/^https?:$/.test(link.protocol)) return;
      // Query and fragment often carry tokens; the page address is enough to count the click.
      var url = link.origin + link.pathname;
      if (OUTBOUND && link.host != loc.host) {
        track("Outbound Link: Click", { props: { url: url } });
      } else if (
        DOWNLOADS &&
        ("," + FILE_TYPES + "," + (attr("file-types") || "") + ",").indexOf(
          "," + link.pathname.split(".").pop().toLowerCase() + ","
        ) >= 0
      ) {
        track("File Download", { props: { url: url } });
      }
    } catch (e) {}
  }

  function attr(name) {
    return script.getAttribute("data-" + name);
  }

  // Setup runs inside try too: without currentScript (e.g. injected oddly) we stay silent.
  try {
    script = doc.currentScript;
    // Relative to the script, so a first-party path such as /stats/js/script.js posts to
    // /stats/api/event without configuration.
    endpoint = attr("api") || new URL("../api/event", script.src);
    domain = attr("domain") || loc.hostname;
    hashMode = attr("hash") != null;
    var queue = (win.firstparty && win.firstparty.q) || [];
    win.firstparty = track;
    var hist = win.history;
    ["pushState", "replaceState"].forEach(function (method) {
      var original = hist[method];
      // Both return undefined, so the wrapper need not pass a result on.
      hist[method] = function () {
        original.apply(this, arguments);
        page();
      };
    });
    win.addEventListener("popstate", page);
    if (hashMode) win.addEventListener("hashchange", page);
    doc.addEventListener("visibilitychange", onVisibility);
    win.addEventListener("pagehide", onVisibility);
    doc.addEventListener("scroll", onScroll);
    doc.addEventListener("prerenderingchange", page);
    if (OUTBOUND || DOWNLOADS || TAGGED) {
      doc.addEventListener("click", onClick);
      doc.addEventListener("auxclick", onClick);
    }
    if (TAGGED) doc.addEventListener("submit", onClick);
    page();
    queue.forEach(function (args) {
      track.apply(0, args);
    });
  } catch (e) {}
})(window, document, location, navigator);
