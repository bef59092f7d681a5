//! `directory topics [TOPIC]`: the subscribed topic patterns, or the groups (and instances)
//! a message published on TOPIC goes to.

use directory_api::{Topic, TopicSubscribers, TopicsResponse};

use super::connect::{ClientArgs, ClientError};
use super::output::table;

/// Prints the pattern listing, or the subscribers of `topic`.
pub(super) async fn run(args: &ClientArgs, topic: Option<&Topic>) -> Result<(), ClientError> {
    let client = args.client()?;
    match topic {
        None => {
            let list = client.topics().await?;
            args.output().print(&list, patterns_table)
        }
        Some(topic) => {
            let view = client.topic_subscribers(topic).await?;
            args.output().print(&view, subscribers_table)
        }
    }
}

fn patterns_table(list: &TopicsResponse) -> String {
    let rows: Vec<Vec<String>> = list
        .patterns
        .iter()
        .flat_map(|p| {
            p.groups.iter().map(|g| {
                let pattern = p.pattern.to_string();
                vec![pattern, g.group.to_string(), g.instances.to_string()]
            })
        })
        .collect();
    table(&["PATTERN", "GROUP", "INSTANCES"], &rows)
}

fn subscribers_table(view: &TopicSubscribers) -> String {
    let rows: Vec<Vec<String>> = view
        .groups
        .iter()
        .flat_map(|g| {
            g.instances.iter().map(|r| {
                let instance = format!("{}/{}", r.service, r.instance);
                vec![g.group.to_string(), instance, r.address.to_string()]
            })
        })
        .collect();
    table(&["GROUP", "INSTANCE", "ADDRESS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_table_has_one_row_per_pattern_and_group() {
        let list: TopicsResponse = serde_json::from_value(serde_json::json!({
            "index": 3,
            "patterns": [{"pattern": "orders.>", "groups": [
                {"group": "audit", "instances": 1}, {"group": "billing", "instances": 2}
            ]}]
        }))
        .unwrap();
        let text = patterns_table(&list);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().nth(2).unwrap().contains("billing"), "{text}");
    }
}
