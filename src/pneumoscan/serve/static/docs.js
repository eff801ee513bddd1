// Starts Swagger UI on this server's OpenAPI document (a file, not an inline script, for the CSP).
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
