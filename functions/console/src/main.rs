//! `GET /console/<asset>`: serves the web console's page and files.

berth::route_function!(berth::api::console::CONSOLE);
