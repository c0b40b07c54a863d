// The page's own script, a file rather than inline so that its Content-Security-Policy
// allows no inline script: the Start and Restart buttons open a new session, and the terminal
// takes the focus as soon as it exists, so keys reach the control room without a click.
function startUrl() {
  const url = new URL(window.location.href);
  const params = new URLSearchParams(url.search);
  params.delete("delay");
  return url.pathname + "?" + params.toString();
}
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.restart")) {
    button.addEventListener("click", () => {
      window.location.href = startUrl();
    });
  }
});

// textual.js says "focus" (and sizes) on its socket as they happen; the terminal is focused at
// once, while the socket may still be connecting, and send() then threw "Still in CONNECTING
// state" on every load (the app never heard that focus). What is sent early waits for "open".
const sendNow = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (this.readyState === WebSocket.CONNECTING) {
    this.addEventListener("open", () => sendNow.call(this, data), { once: true });
  } else {
    sendNow.call(this, data);
  }
};

function focusTerminal() {
  const input = document.querySelector("#terminal .xterm-helper-textarea");
  if (input) {
    input.focus();
  } else {
    window.setTimeout(focusTerminal, 50);  // textual.js makes the terminal on load
  }
}
window.addEventListener("load", focusTerminal);
